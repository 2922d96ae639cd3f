//! Settings: see the helper task.
