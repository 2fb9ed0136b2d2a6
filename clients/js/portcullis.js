// Placeholder: the JavaScript client (clients/js/portcullis.js) is written separately.
export const PLACEHOLDER = true;
