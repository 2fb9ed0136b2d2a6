//! portcullis_groups (placeholder).
