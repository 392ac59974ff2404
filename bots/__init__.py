"""The chatbots: one conversation engine behind Telegram, Zalo OA and the web chat.

Where each part lives: docs/architecture.md."""
