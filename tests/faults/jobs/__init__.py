"""Misbehaving jobs for the fault suite, copied beside each test registry as ``faultjobs``."""
