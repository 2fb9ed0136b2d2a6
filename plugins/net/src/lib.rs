//! portcullis_net (placeholder).
