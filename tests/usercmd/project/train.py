"""A plain PyTorch training script, written as a user writes one: torch only, no spotrain import.

It follows spotrain's contract (README, "Your own training script"): it resumes from
$SPOTRAIN_RESUME_DIR, saves to $SPOTRAIN_CHECKPOINT_DIR when SIGTERM comes and exits 75, and prints
JSON metric lines. STEPS and STEP_S (the seconds a step takes: this net is too small to take any)
come from the environment.
"""

import json
import os
import signal
import sys
import time

import torch

STEPS = int(os.environ.get("STEPS", "80"))
STEP_S = float(os.environ.get("STEP_S", "0.05"))
ckpt_dir = os.environ.get("SPOTRAIN_CHECKPOINT_DIR", "checkpoints")
resume_dir = os.environ.get("SPOTRAIN_RESUME_DIR", ckpt_dir)
stop = False


def on_sigterm(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_sigterm)
torch.manual_seed(0)
x = torch.randn(512, 8)
y = (x[:, 0] + x[:, 1] > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
step = 0
resume = os.path.join(resume_dir, "last.pt")
if os.path.exists(resume):
    state = torch.load(resume)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    step = state["step"]
    print(f"resumed from step {step}", flush=True)

while step < STEPS:
    step += 1
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    time.sleep(STEP_S)
    print(json.dumps({"step": step, "loss": round(loss.item(), 4)}), flush=True)
    if step % 20 == 0:
        with torch.no_grad():
            top1 = (model(x).argmax(1) == y).float().mean().item()
        print(json.dumps({"step": step, "top1": round(top1, 4)}), flush=True)
    if stop:
        os.makedirs(ckpt_dir, exist_ok=True)
        tmp = os.path.join(ckpt_dir, "last.pt.tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
        os.replace(tmp, os.path.join(ckpt_dir, "last.pt"))
        print(f"saved step {step}", flush=True)
        sys.exit(75)
print("done", flush=True)
