"""The bad-input corpus: every kind of image, manifest, model folder and bundle a careful or a hostile user
may hand FaceAudit, made at test time from the CC BY sample portraits (no binary blobs in git).

Each `Case` says what the file is and what must happen to it:
    accepted  the input is used (a photo gives a prediction, a model or bundle opens);
    rejected  a batch keeps going and records this row as a reject whose reason matches `expect`;
    error     the whole input is refused with one clear message matching `expect` (exit 2 in a CLI,
              an error box on a page), never a traceback.

`tests/test_corpus.py` drives every case through its path (library, CLI, page).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.bundle import write_bundle
from tests.bundle_fixture import synthetic_bundle
from tests.conftest import LONDON_FIXTURES

OUTCOMES = ("accepted", "rejected", "error")


@dataclass(frozen=True)
class Case:
    kind: str
    make: Callable[[Path], Path]  # writes the input under a folder, returns its path
    outcome: str
    expect: str = ""  # regex: the reject reason or error message; for accepted photos, the face flags


def _portrait(index: int = 0) -> np.ndarray:
    return np.asarray(Image.open(sorted(LONDON_FIXTURES.glob("*.jpg"))[index]).convert("RGB"))


def _save(name: str, image: Image.Image | np.ndarray, **options) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
        picture.save(folder / name, **options)
        return folder / name
    return make


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A valid 8 x 8 PNG whose header claims `width` x `height` (what a decompression bomb looks like)."""
    data = bytearray(_encoded(Image.new("L", (8, 8)), "PNG"))
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def _exif_rotated() -> Callable[[Path], Path]:
    """Pixels stored sideways with EXIF orientation 6 (rotate 90° clockwise to view), as phones do."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save("exif-rotated.jpg", np.ascontiguousarray(np.rot90(_portrait(), 1)), exif=exif)


def _group_photo(faces: int) -> np.ndarray:
    canvas = np.full((300, 300 * faces, 3), 200, dtype=np.uint8)
    for index in range(faces):
        canvas[:, 300 * index: 300 * (index + 1)] = _portrait(index % 3)
    return canvas


def _small_face() -> np.ndarray:
    canvas = np.full((200, 200, 3), 128, dtype=np.uint8)
    canvas[80:112, 80:112] = cv2.resize(_portrait(), (32, 32), interpolation=cv2.INTER_AREA)
    return canvas


def _deep(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array)


def _grey() -> np.ndarray:
    return np.asarray(Image.fromarray(_portrait()).convert("L"), dtype=np.float32) / 255


def _animated_gif(folder: Path) -> Path:
    frames = [Image.fromarray(_portrait(0)), Image.fromarray(_portrait(1))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    return folder / "animated.gif"


def _folder_named_like_a_photo(folder: Path) -> Path:
    (folder / "folder.jpg").mkdir()
    return folder / "folder.jpg"


def _missing(folder: Path) -> Path:
    return folder / "missing.jpg"


def image_cases() -> list[Case]:
    """Photos and files posing as photos; each goes through `load_image` and a batch audit."""
    face = Image.fromarray(_portrait())
    jpeg = _encoded(face, "JPEG", quality=90)
    return [
        Case("jpeg", _save("portrait.jpg", face), "accepted", "none"),
        Case("progressive jpeg", _save("progressive.jpg", face, progressive=True), "accepted", "none"),
        Case("png", _save("portrait.png", face), "accepted", "none"),
        Case("webp", _save("portrait.webp", face), "accepted", "none"),
        Case("bmp", _save("portrait.bmp", face), "accepted", "none"),
        Case("tiff", _save("portrait.tif", face), "accepted", "none"),
        Case("gif (palette)", _save("portrait.gif", face), "accepted", ""),
        Case("animated gif", _animated_gif, "accepted", ""),
        Case("grayscale jpeg", _save("grey.jpg", face.convert("L")), "accepted", ""),
        Case("cmyk jpeg", _save("cmyk.jpg", face.convert("CMYK")), "accepted", "none"),
        Case("rgba png", _save("rgba.png", face.convert("RGBA")), "accepted", "none"),
        Case("16-bit png", _save("deep16.png", _deep((_grey() * 65535).astype(np.uint16))), "accepted", ""),
        Case("32-bit integer tiff", _save("deep32.tif", _deep((_grey() * 4e9 - 2e9).astype(np.int32))), "accepted", ""),
        Case("32-bit float tiff", _save("float.tif", _deep(_grey())), "accepted", ""),
        Case("exif-rotated jpeg", _exif_rotated(), "accepted", "none"),
        Case("upside-down photo", _save("upside-down.jpg", np.ascontiguousarray(_portrait()[::-1, ::-1])),
             "accepted", "upside down"),
        Case("sideways photo, no exif", _save("sideways.jpg", np.ascontiguousarray(np.rot90(_portrait(), 1))),
             "accepted", "sideways"),
        Case("tiny face", _save("tiny-face.png", _small_face()), "accepted", "small"),
        Case("five faces", _save("five-faces.jpg", _group_photo(5)), "accepted", ""),
        Case("2000 px photo", _save("large.jpg", cv2.resize(_portrait(), (2000, 2000))), "accepted", "none"),
        Case("formula file name", _save("=HYPERLINK(1).jpg", face), "accepted", "none"),
        Case("unicode file name", _save("visage é ü 顔.jpg", face), "accepted", "none"),
        Case("no face", _save("gradient.png", np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None],
                                                        (256, 1, 3))), "rejected", "no face found"),
        Case("10000 x 10 strip", _save("strip.png", np.full((10, 10_000, 3), 90, np.uint8)), "rejected", "no face found"),
        Case("1 x 1 pixel", _save("pixel.png", np.zeros((1, 1, 3), np.uint8)), "rejected", "no face found"),
        Case("empty file", _write("empty.jpg", b""), "rejected", "not an image file"),
        Case("text posing as jpeg", _write("notes.jpg", b"name,age\nalice,30\n"), "rejected", "not an image file"),
        Case("html posing as png", _write("page.png", b"<html><script>alert(1)</script></html>"), "rejected",
             "not an image file"),
        Case("random bytes", _write("noise.jpg", np.random.default_rng(0).bytes(4096)), "rejected", "not an image file"),
        Case("truncated jpeg", _write("truncated.jpg", jpeg[: len(jpeg) // 3]), "rejected", "truncated or corrupt"),
        Case("png bomb header", _write("bomb.png", _png_header(40_000, 40_000)), "rejected", "decompression bomb"),
        Case("119 MP png header", _write("huge16.png", _png_header(10_900, 10_900)), "rejected", "megapixels"),
        Case("folder named like a photo", _folder_named_like_a_photo, "rejected", "missing file"),
        Case("missing file", _missing, "rejected", "missing file"),
    ]


# --- manifests: each is audited by `python -m training.evaluate --manifest` next to two good photos ---

GOOD = ("a.jpg", "b.jpg")


def _manifest(data: bytes | str, name: str = "m.csv") -> Callable[[Path], Path]:
    return _write(name, data.encode() if isinstance(data, str) else data)


def _manifest_folder(folder: Path) -> Path:
    (folder / "m.csv").mkdir()
    return folder / "m.csv"


@dataclass(frozen=True)
class ManifestCase(Case):
    rows: int = 0  # data rows in the manifest: predictions + rejects must equal it
    rejects: int = 0


def manifest_cases() -> list[ManifestCase]:
    """Manifests as spreadsheets, scripts and attackers write them."""
    return [
        ManifestCase("comma", _manifest("path,age,gender\na.jpg,30,male\nb.jpg,40,female\n"), "accepted", rows=2),
        ManifestCase("semicolon", _manifest("path;age;gender\na.jpg;30;male\nb.jpg;40;female\n"), "accepted", rows=2),
        ManifestCase("tab", _manifest("path\tage\na.jpg\t30\nb.jpg\t40\n"), "accepted", rows=2),
        ManifestCase("pipe", _manifest("path|age\na.jpg|30\nb.jpg|40\n"), "accepted", rows=2),
        ManifestCase("upper-case headers", _manifest("PATH,AGE,Gender\na.jpg,30,male\nb.jpg,40,female\n"), "accepted",
                     rows=2),
        ManifestCase("utf-8 bom, crlf", _manifest("\ufeffpath,age\r\na.jpg,30\r\nb.jpg,40\r\n"), "accepted", rows=2),
        ManifestCase("bare cr line ends", _manifest("path,age\ra.jpg,30\rb.jpg,40\r"), "accepted", rows=2),
        ManifestCase("latin-1", _manifest("path,age,city\na.jpg,30,Köln\nb.jpg,40,Málaga\n".encode("latin-1")),
                     "accepted", "read as Latin-1", rows=2),
        ManifestCase("quoted newline in a field", _manifest('path,age,note\na.jpg,30,"two\nlines"\nb.jpg,40,x\n'),
                     "accepted", rows=2),
        ManifestCase("columns named like outputs", _manifest("path,pred_gender,n_faces,p_gender_Male\na.jpg,x,9,1\n"
                                                             "b.jpg,y,9,0\n"), "accepted", "kept as", rows=2),
        ManifestCase("paths outside its folder", _manifest("path,age\n../a.jpg,30\n../b.jpg,40\n", "sub/m.csv"),
                     "accepted", "outside", rows=2),
        ManifestCase("bad labels", _manifest("path,age,gender\na.jpg,300,male\nb.jpg,40,robot\n"), "rejected",
                     "not a whole number of years|unknown gender", rows=2, rejects=2),
        ManifestCase("row with too many fields", _manifest("path,age\na.jpg,30,extra\nb.jpg,40\n"), "rejected",
                     "3 fields where the header has 2", rows=2, rejects=1),
        ManifestCase("formula injection in a path", _manifest("path,age\n=cmd|' /c calc'!A1,30\nb.jpg,40\n"),
                     "rejected", "missing file", rows=2, rejects=1),
        ManifestCase("header only", _manifest("path,age,gender\n"), "rejected", "no image of m produced a prediction"),
        ManifestCase("a spreadsheet's own header names", _manifest("File Name,Sex,Age Group\na.jpg,F,30-39\n"
                                                                   "b.jpg,M,40-49\n"), "accepted",
                     "read column 'File Name' as path, 'Sex' as gender, 'Age Group' as age_bin", rows=2),
        ManifestCase("missing path column", _manifest("id,age\na.jpg,30\n"), "error", r"missing column\(s\) \['path'\]"),
        ManifestCase("empty file", _manifest(""), "error", "is empty"),
        ManifestCase("nul bytes (a spreadsheet file)", _manifest(b"PK\x03\x04\x00\x00path"), "error", "NUL bytes"),
        ManifestCase("duplicate headers", _manifest("path,Age,age\na.jpg,1,2\n"), "error", "appear twice"),
        ManifestCase("a folder", _manifest_folder, "error", "is a folder"),
        ManifestCase("missing manifest", _missing, "error", "does not exist"),
    ]


# --- model folders: each is opened by `load_checkpoint` and by the Inspect page ---

def model_cases(good: Path, other: Path) -> list[Case]:
    """Tampered copies of a good checkpoint folder (`good`); `other` is a second, different checkpoint."""
    def tampered(change: Callable[[dict, Path], None] | None = None, *, weights: bytes | None = None,
                 config_text: str | None = None, drop: str = "") -> Callable[[Path], Path]:
        def make(folder: Path) -> Path:
            target = folder / "model"
            target.mkdir()
            for file in good.iterdir():
                (target / file.name).write_bytes(file.read_bytes())
            config = json.loads((target / "config.json").read_text())
            if change:
                change(config, target)
            (target / "config.json").write_text(config_text if config_text is not None else json.dumps(config))
            if weights is not None:
                (target / "model.safetensors").write_bytes(weights)
            if drop:
                (target / drop).unlink()
            return target
        return make

    def set_model(key: str, value: object) -> Callable[[dict, Path], None]:
        return lambda config, _: config["model"].__setitem__(key, value)

    def pickled_pretrained_file(config: dict, target: Path) -> None:
        (target / "evil.pkl").write_bytes(pickle.dumps({"not": "weights"}))
        config["model"].update(pretrained=True, pretrained_file=str(target / "evil.pkl"))

    weights = (good / "model.safetensors").read_bytes()
    return [
        Case("good checkpoint", tampered(), "accepted"),
        Case("pretrained: true (ignored, never fetched)", tampered(set_model("pretrained", True)), "accepted"),
        Case("pretrained_file pointing at a pickle (ignored)", tampered(pickled_pretrained_file), "accepted"),
        Case("missing folder", _missing, "error", "missing"),
        Case("no config.json", tampered(drop="config.json"), "error", "config.json"),
        Case("no weights", tampered(drop="model.safetensors"), "error", "model.safetensors is missing"),
        Case("config not json", tampered(config_text="{model: tiny"), "error", "config.json"),
        Case("config a json list", tampered(config_text="[1, 2]"), "error", "config.json"),
        Case("unknown backbone", tampered(set_model("backbone", "resnet9000")), "error", "backbone"),
        Case("input_size 20000", tampered(set_model("input_size", 20_000)), "error", "input_size"),
        Case("input_size text", tampered(set_model("input_size", "big")), "error", "input_size"),
        Case("truncated weights", tampered(weights=weights[: len(weights) // 2]), "error", "weights|safetensors"),
        Case("weights of another model", tampered(weights=(other / "model.safetensors").read_bytes()), "error",
             "sha-?256|hash|do not match"),
    ]


# --- bundles: each is opened by `read_bundle` and by the Overview page ---

def bundle_cases() -> list[Case]:
    """Damaged, foreign and hostile audit bundles."""
    def bundle(change: Callable[[Path], None] | None = None, edit: Callable | None = None) -> Callable[[Path], Path]:
        def make(folder: Path) -> Path:
            made = synthetic_bundle(60)
            if edit:
                edit(made)
            write_bundle(made, folder / "bundle")
            if change:
                change(folder / "bundle")
            return folder / "bundle"
        return make

    def metrics_text(text: str) -> Callable[[Path], None]:
        return lambda path: (path / "metrics.json").write_text(text)

    def metrics_field(key: str, value: object) -> Callable[[Path], None]:
        def change(path: Path) -> None:
            metrics = json.loads((path / "metrics.json").read_text())
            metrics[key] = value
            (path / "metrics.json").write_text(json.dumps(metrics))
        return change

    def foreign_metrics(path: Path) -> None:
        other = path.parent / "other"
        write_bundle(synthetic_bundle(120), other)
        (path / "metrics.json").write_bytes((other / "metrics.json").read_bytes())

    def drop_column(path: Path) -> None:
        import pandas as pd
        frame = pd.read_parquet(path / "predictions.parquet")
        frame.drop(columns=["pred_gender"]).to_parquet(path / "predictions.parquet")

    def empty_folder(folder: Path) -> Path:
        (folder / "bundle").mkdir()
        return folder / "bundle"

    def pickled_saliency(path: Path) -> None:
        np.savez(path / "saliency.npz", maps=np.array([{"evil": 1}], dtype=object))

    def hostile_text(made) -> None:
        made.metrics["mitigation"] = "![x](http://127.0.0.1:9/pixel.png) <script>alert(1)</script>"
        made.predictions.loc[0, "file"] = "=HYPERLINK(\"http://127.0.0.1:9\")"

    return [
        Case("good bundle", bundle(), "accepted"),
        Case("hostile markdown and formulas", bundle(edit=hostile_text), "accepted"),
        Case("pickled saliency.npz (ignored)", bundle(pickled_saliency), "accepted"),
        Case("empty folder", empty_folder, "error", "not an audit bundle"),
        Case("missing folder", _missing, "error", "not an audit bundle|does not exist"),
        Case("metrics not json", bundle(metrics_text("{n: 1")), "error", "not valid JSON"),
        Case("metrics a json list", bundle(metrics_text("[]")), "error", "must hold a JSON object"),
        Case("metrics of another bundle", bundle(foreign_metrics), "error", "describes 120 faces"),
        Case("future format", bundle(metrics_field("format", "faceaudit-bundle/99")), "error", "unknown bundle format"),
        Case("corrupt parquet", bundle(lambda path: (path / "predictions.parquet").write_bytes(b"PAR1 junk")),
             "error", "damaged"),
        Case("prediction column missing", bundle(drop_column), "error", r"lacks column\(s\)"),
        Case("rejects.csv not a csv", bundle(lambda path: (path / "rejects.csv").write_bytes(b"\x00\xff" * 50)),
             "error", "damaged"),
    ]
