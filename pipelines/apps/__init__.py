"""The applications: assembled pipelines (dashcam, instances, road, edges, medical, satellite),
their configuration and the pipeline registry. Import the task library and the stream runtime."""
