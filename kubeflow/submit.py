"""Submit a compiled pipeline spec to Vertex AI Pipelines (google-cloud-aiplatform PipelineJob)."""
from typing import Optional


def submit(spec_file: str, *, project: str, region: str, bucket: str,
           service_account: Optional[str] = None, job_id: Optional[str] = None):
    """Create and submit the PipelineJob; returns it (the caller may `.wait()`)."""
    from google.cloud import aiplatform  # only needed for the cloud path

    aiplatform.init(project=project, location=region, staging_bucket=bucket)
    job = aiplatform.PipelineJob(display_name=job_id or "mbt", template_path=spec_file,
                                 pipeline_root=f"{bucket.rstrip('/')}/pipeline_root",
                                 job_id=job_id, enable_caching=True)
    job.submit(service_account=service_account)
    return job
