"""A message left after the tone is transcribed after the commit that keeps it, in memory: a
process that dies in between leaves it without words. The next start transcribes it, once.
Without Asterisk: the message is a spoken file in the spool, the call recorded as the
switchboard records it; the speech engine is the real one."""

from __future__ import annotations

from pathlib import Path

from ioc_core.access.roles import SYSTEM
from ioc_core.api import InProcessCoreApi
from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from ioc_core.runtime import Core
from telephony.asterisk.config import AsteriskSettings
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.ivr.prompts import speak
from telephony.role import build_switchboard
from telephony.settings import SwitchboardSettings
from telephony.speech.models import ensure_whisper_base
from telephony.speech.whisper import WhisperEngine


async def test_i12_03_a_message_whose_transcription_died_is_transcribed_at_the_next_start(
    core: Core, tmp_path: Path
) -> None:
    settings = SwitchboardSettings.from_env({})
    store = CallStore(sessions=core.sessions, settings=settings, on_commit=core.relay.notify)
    spool = tmp_path / "spool"
    path = "recording/ioc-msg/msg.9.wav"
    (spool / path).parent.mkdir(parents=True)
    speak("There is a fire in the market. Please send a fire truck.", "en", spool / path)
    await store.record("msg.9", Fact.ARRIVED, ani="0912000019", service="1022")
    await store.record("msg.9", Fact.IVR_STARTED)
    await store.record("msg.9", Fact.IVR_DONE, language="en", ivr_choices=[])
    await store.record("msg.9", Fact.RECORDED, recording_path=path)
    # ... and the process died before transcribing it.
    assert await store.transcripts.of_call("msg.9") == []

    sb = build_switchboard(
        store=store,
        settings=settings,
        asterisk=AsteriskSettings.from_env(tmp_path / "asterisk", {}),
        api=InProcessCoreApi(core=core, principal=SYSTEM),
        stt=WhisperEngine(
            model_dir=ensure_whisper_base(ArtifactCache(Settings.from_env().cache_dir)),
            language="en",
        ),
        spool=spool,
    )
    await sb._start_up()  # the switchboard's once-per-start work
    (kept,) = await store.transcripts.of_call("msg.9")
    assert kept["kind"] == "message" and kept["audio_path"] == path and kept["error"] is None
    (item,) = [i for i in await store.callbacks.items() if i["ani"] == "0912000019"]
    assert "fire" in (item["transcript"] or "").lower()
    await sb._start_up()  # a second start: nothing left to transcribe
    assert len(await store.transcripts.of_call("msg.9")) == 1
