"""Accounts: patients, proxies (friends and family) and practice staff; invitations, passwords, sessions."""
