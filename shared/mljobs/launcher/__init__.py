"""The `mljobs` command: runs the jobs and the serving fleet through the Docker SDK.

It needs only the Docker SDK, rich and PyYAML on the host; the jobs' stack lives in the images.
"""
