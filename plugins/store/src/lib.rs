//! portcullis_store (placeholder).
