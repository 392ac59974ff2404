"""SIP tools for the tests and the switchboard benchmark: the agent phone (pyVoIP, a dev
dependency) that answers what Asterisk rings, and SIPp callers (one scenario builder).

They live with the tests because only the tests and `bench/` use them; the bench imports them
from here as it imports `tests.fakes`."""
