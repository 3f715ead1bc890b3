//! The upload engine: planning, parallel APPENDs, retries, progress and the final report.
