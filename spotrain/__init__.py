"""spotrain: train neural nets on AWS spot instances, lose almost nothing to interruptions, know the cost.

The controller package. It never imports torch: the trainer (`trainer/`) runs on the instance and meets
the controller only at the contract written in ARCHITECTURE.md.
"""

__version__ = "0.1.0"
