"""Cloud faults against AWS (EC2, S3, Lambda) through boto3.

The injectors live in :mod:`injectors.cloud.injectors`; reaching AWS (settings from the
target's ``config["aws"]``, sessions, error texts that never carry secrets) lives in
:mod:`injectors.cloud.aws`. boto3 is imported only when a fault actually talks to AWS,
because the registry imports every family module just to list the fault types.
"""
