"""Local stand-ins for clouds the tests cannot reach (Telegram, Zalo): HTTP servers on
127.0.0.1 that speak the parts of the documented APIs the hub uses and record every call.
Also used by the bots benchmark."""
