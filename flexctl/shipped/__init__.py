"""Shipped configuration, mapped here from config/ and procedures/ in the wheel."""
