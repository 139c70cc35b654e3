"""What runs on a detached run's instance, shipped in the run's bundle beside trainer/: stdlib (and
boto3, imported where S3 or Auto Scaling is called) only, never the rest of spotrain, so it runs on the
image's Python without spotrain's dependencies. The laptop imports the same records to read the ledger.
"""
