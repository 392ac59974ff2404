"""telephony package — see ARCHITECTURE.md; filled by later issues."""
