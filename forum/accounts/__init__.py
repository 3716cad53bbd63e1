"""Accounts: registration with consent, login, password reset, roles."""
