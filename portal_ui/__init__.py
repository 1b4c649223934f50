"""The patient portal and practice console: views and templates over the other packages' services."""
