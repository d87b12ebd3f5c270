//! Services that keep the jobs table moving and tidy.

pub(crate) mod job_scheduler;
