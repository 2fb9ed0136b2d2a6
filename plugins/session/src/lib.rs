//! portcullis_session (placeholder).
