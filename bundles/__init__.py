"""Patient Bundles: the Download, Send Record (password-encrypted JWE for outside providers) and retrieval."""
