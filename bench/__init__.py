"""Benchmarks: `python -m bench.reports` measures how fast the hub takes incident reports;
`python -m bench.switchboard` measures the switchboard (Asterisk + the app) against bare
Asterisk: call setups/s, concurrent media calls, INVITE -> agent ringing."""
