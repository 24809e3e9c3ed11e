"""SageMaker's container contract for the train and serve images.

SageMaker (and its SDK's local mode) runs `docker run <image> train` or `<image> serve` as the
image's default user, with /opt/ml/... bind-mounted and owned by root. The entries here start as
root for that, hand the job an unprivileged copy of what it must read, and run the job itself as
uid 10001; every other use of the images runs the job as before.

    /opt/ml/input/config/hyperparameters.json   settings (a flat object of strings)
    /opt/ml/input/data/<channel>/               train (required), validation (optional)
    /opt/ml/model/<name>/...                    a one-model store: what the serve image reads back
    /opt/ml/output/failure                      the one-line reason of a failed training
"""
