"""Text data readers: CSV / JSONL files or Debian's fortunes, tokenized with Hugging Face `tokenizers`.

The tokenizer is trained on the training split (WordPiece or BPE) or loaded from a tokenizer.json,
and travels with the run (run folder and checkpoints), so test and predict see the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ednaml.config.paths import Location
from ednaml.data.base import Crawl, Crawler, DataReader, LabelledDataset, Sample, read_rows, seeded_split
from ednaml.errors import DataError, DataProblems
from ednaml.registry import register
from ednaml.utils import require

_ARGS = "EXECUTION.DATAREADER.CRAWLER_ARGS"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FORTUNES = "/usr/share/games/fortunes"


def _splits(samples: list[Sample], test_fraction: float, seed: int) -> dict[str, list[Sample]]:
    train, test = seeded_split(samples, test_fraction, seed + 1)
    return {"train": train, "test": test}


def _read_rows(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{_ARGS}.{key}", f"file {str(path)!r} does not exist")
    return read_rows(path, f"{_ARGS}.{key}")


class TextFilesCrawler(Crawler):
    """Texts and one or more label columns from CSV or JSONL files: a train file, and val / test files
    or seeded splits of it."""

    def __init__(
        self,
        train_file: Location,
        val_file: Location | None = None,
        test_file: Location | None = None,
        text_column: str = "text",
        label_columns: Sequence[str] = ("label",),
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.text_column = text_column
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
        self.test_fraction = test_fraction

    def find(self) -> Crawl:
        problems = DataProblems()  # every file missing or lacking a column, at once
        rows = {}
        for split, file in self.files.items():
            with problems.collected():
                rows[split] = _read_rows(Path(file), f"{split}_file") if file else None
        rows = {split: found for split, found in rows.items() if found is not None}
        for split, found in rows.items():
            columns = list(found[0]) if found else []
            for key, column in [("text_column", self.text_column)] + [("label_columns", c) for c in self.label_columns]:
                if found and column not in columns:
                    problems.add(
                        f"{_ARGS}.{key}",
                        f"column {column!r} is not in {self.files[split]!r}; its columns are {columns}",
                    )
        problems.raise_any()
        classes = {c: sorted({str(r[c]) for found in rows.values() for r in found}) for c in self.label_columns}
        index = {c: {v: i for i, v in enumerate(values)} for c, values in classes.items()}
        samples = {
            split: [(str(r[self.text_column]), tuple(index[c][str(r[c])] for c in self.label_columns)) for r in found]
            for split, found in rows.items()
        }
        splits = (
            samples
            if "test" in samples
            else {**samples, **_splits(samples["train"], self.test_fraction, self.split_seed)}
        )
        return Crawl(splits=splits, labels=classes, files=[f for f in self.files.values() if f])


class FortunesCrawler(Crawler):
    """Debian's `fortunes` package: each quotation labelled with the category file it is in
    (apt-get install fortunes)."""

    def __init__(
        self,
        categories: Sequence[str] = ("computers", "science", "politics"),
        folder: Location = FORTUNES,
        label_name: str = "category",
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        self.categories, self.folder, self.label_name = list(categories), Path(folder), label_name
        self.test_fraction = test_fraction

    def find(self) -> Crawl:
        if not self.folder.is_dir():
            raise DataError(
                f"{_ARGS}.folder",
                f"folder {str(self.folder)!r} does not exist; install Debian's fortunes "
                "package (apt-get install fortunes) or point folder at its files",
            )
        samples: list[Sample] = []
        for label, category in enumerate(self.categories):
            path = self.folder / category
            if not path.is_file():
                known = sorted(p.name for p in self.folder.iterdir() if "." not in p.name)
                raise DataError(f"{_ARGS}.categories", f"{category!r} is not a fortunes category; they are {known}")
            quotes = [q.strip() for q in path.read_text(encoding="utf-8", errors="replace").split("\n%\n")]
            samples += [(" ".join(q.split()), (label,)) for q in quotes if q and q != "%"]
        return Crawl(
            splits=_splits(samples, self.test_fraction, self.split_seed),
            labels={self.label_name: list(self.categories)},
            files=[str(self.folder / c) for c in self.categories],
        )


class PolarityCrawler(Crawler):
    """Gensim's bundled movie-review sentences (Pang & Lee's polarity data, 200 sentences labelled
    negative or positive): installed by `pip install ednaml[text]`, no download."""

    def __init__(
        self, label_name: str = "polarity", test_fraction: float = 0.2, val_fraction: float = 0.1, split_seed: int = 0
    ):
        super().__init__(val_fraction, split_seed)
        self.label_name, self.test_fraction = label_name, test_fraction

    def find(self) -> Crawl:
        path = gensim_data("pang_lee_polarity.cor", "PangLeePolarity")
        classes = ["negative", "positive"]
        samples: list[Sample] = []
        for line in path.read_text(
            encoding="cp1252", errors="replace"
        ).splitlines():  # the original files are not UTF-8
            label, _, text = line.partition(" ")
            if label in ("__label__neg", "__label__pos") and text.strip():
                samples.append((text.strip(), (int(label == "__label__pos"),)))
        return Crawl(
            splits=_splits(samples, self.test_fraction, self.split_seed),
            labels={self.label_name: classes},
            files=[str(path)],
        )


def gensim_data(name: str, reader: str) -> Path:
    """A data file gensim ships with its tests (found without importing gensim, which takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "EXECUTION.DATAREADER.DATAREADER",
            f"{reader} reads gensim's bundled data: pip install 'ednaml[text]' (or pip install gensim)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / name
    if not path.is_file():
        raise DataError("EXECUTION.DATAREADER.DATAREADER", f"{str(path)!r} is missing from this gensim installation")
    return path


class AnalogiesCrawler(Crawler):
    """The word analogies gensim ships (Mikolov et al.'s questions-words.txt: 19,544 lines of four words in 14
    categories, capital-common-countries to gram9-plural-verbs): which category a line is from. `per_class`
    lines of each category, drawn with `split_seed` (null: every line); installed by `pip install ednaml[text]`,
    no download."""

    def __init__(
        self,
        label_name: str = "category",
        per_class: int | None = 200,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__(val_fraction, split_seed)
        if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
            raise ValueError(f"{_ARGS}.per_class: {per_class!r} is not a whole number of at least 1 (or null)")
        self.label_name, self.per_class, self.test_fraction = label_name, per_class, test_fraction

    def find(self) -> Crawl:
        import random

        path = gensim_data("questions-words.txt", "Analogies")
        lines: dict[str, list[str]] = {}
        category = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(":"):
                category = line[1:].strip()
                lines[category] = []
            elif category is not None and line.strip():
                lines[category].append(line.strip())
        classes = list(lines)
        draw = random.Random(self.split_seed)
        samples: list[Sample] = []
        for index, name in enumerate(classes):
            chosen = (
                lines[name]
                if self.per_class is None
                else draw.sample(lines[name], min(self.per_class, len(lines[name])))
            )
            samples += [(text, (index,)) for text in chosen]
        return Crawl(
            splits=_splits(samples, self.test_fraction, self.split_seed),
            labels={self.label_name: classes},
            files=[str(path)],
        )


def train_tokenizer(texts: Iterable[str], kind: str, vocab_size: int, lowercase: bool) -> Any:
    """A WordPiece or BPE tokenizer trained on `texts`, adding [CLS] ... [SEP]."""
    tk = require("tokenizers", "text")
    if kind not in ("wordpiece", "bpe"):
        raise ValueError(f"TRANSFORMATION.ARGS.tokenizer: {kind!r} is not wordpiece or bpe")
    model = tk.models.WordPiece(unk_token="[UNK]") if kind == "wordpiece" else tk.models.BPE(unk_token="[UNK]")
    tokenizer = tk.Tokenizer(model)
    tokenizer.normalizer = tk.normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    trainer_cls = tk.trainers.WordPieceTrainer if kind == "wordpiece" else tk.trainers.BpeTrainer
    tokenizer.train_from_iterator(
        texts, trainer=trainer_cls(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    )
    if kind == "wordpiece":
        tokenizer.decoder = tk.decoders.WordPiece()
    tokenizer.post_processor = tk.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    return tokenizer


class TextEncoder:
    """Text -> token ids, truncated to maxlen (padding happens per batch, to its longest text).

    masking: true (every split) or train_only replaces each token with [MASK] with mlm_probability.
    """

    def __init__(
        self,
        train: bool,
        tokenizer: str = "wordpiece",
        vocab_size: int = 8000,
        lowercase: bool = True,
        maxlen: int = 128,
        tokenizer_file: Location | None = None,
        masking: bool | str = False,
        mlm_probability: float = 0.15,
    ):
        if masking not in (True, False, "train_only"):
            raise ValueError(f"TRANSFORMATION.ARGS.masking: {masking!r} is not true, false or train_only")
        self.train, self.kind, self.vocab_size, self.lowercase, self.maxlen = (
            train,
            tokenizer,
            vocab_size,
            lowercase,
            maxlen,
        )
        self.tokenizer_file, self.mlm_probability = tokenizer_file, mlm_probability
        self.mask = masking is True or (masking == "train_only" and train)
        self.tokenizer: Any = None

    def fit(self, texts: Iterable[str]) -> None:
        """Load tokenizer_file, or train a tokenizer on the training texts."""
        tk = require("tokenizers", "text")
        if self.tokenizer_file:
            if not Path(self.tokenizer_file).is_file():
                raise DataError("TRANSFORMATION.ARGS.tokenizer_file", f"file {self.tokenizer_file!r} does not exist")
            self.tokenizer = tk.Tokenizer.from_file(self.tokenizer_file)
        else:
            self.tokenizer = train_tokenizer(texts, self.kind, self.vocab_size, self.lowercase)
        self._configure()

    def adopt(self, serialized: str) -> None:
        """Use a tokenizer saved with a run (its JSON)."""
        self.tokenizer = require("tokenizers", "text").Tokenizer.from_str(serialized)
        self._configure()

    def _configure(self) -> None:
        self.tokenizer.enable_truncation(self.maxlen)
        self.tokenizer.no_padding()
        self.special = {
            self.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS if self.tokenizer.token_to_id(t) is not None
        }

    @property
    def info(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.get_vocab_size(), "padding_idx": self.tokenizer.token_to_id("[PAD]") or 0}

    def __call__(self, text: str) -> torch.Tensor:
        ids = torch.tensor(self.tokenizer.encode(text).ids, dtype=torch.long)
        if self.mask and self.mlm_probability > 0:
            candidates = torch.tensor([i not in self.special for i in ids.tolist()])
            chosen = (torch.rand(len(ids)) < self.mlm_probability) & candidates
            ids = ids.masked_fill(chosen, self.tokenizer.token_to_id("[MASK]"))
        return ids


def pad_batch(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Dynamic padding: every text of the batch padded to the batch's longest, with an attention mask."""
    ids = torch.nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True, padding_value=0)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (x, _) in enumerate(batch):
        mask[i, : len(x)] = True
    return {"input_ids": ids, "attention_mask": mask}, torch.stack([y for _, y in batch])


@register("dataset", "TextDataset")
class TextDataset(LabelledDataset):
    """Texts with one class index per label; the transform encodes them."""


def text_inputs(path: str) -> list[tuple[str, Any]]:
    """Texts to predict on: a .txt file (one text per line), a CSV or JSONL file with a `text` column (and
    an optional `id` column), or a folder of .txt files (one text each)."""
    from ednaml.data.readers import files_in

    source = Path(path).expanduser()
    if source.is_file() and source.suffix.lower() in (".csv", ".jsonl", ".json"):
        try:
            rows = _read_rows(source, "text_file")
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError("--data", f"{path!r} cannot be read: {err}") from None
        if not all(isinstance(row, dict) and "text" in row for row in rows):
            raise DataError("--data", f"{path!r}: every row needs a `text` field (and may have an `id`)")
        return [(str(row.get("id", f"{path}:{number}")), str(row["text"])) for number, row in enumerate(rows, start=1)]
    files = files_in(path, (".txt",), "text")
    if source.is_file():
        lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
        return [(f"{path}:{number}", line) for number, line in enumerate(lines, start=1) if line.strip()]
    return [(str(f), f.read_text(encoding="utf-8", errors="replace")) for f in files]


class TextReader(DataReader):
    dataset = TextDataset
    transforms = TextEncoder
    collate = staticmethod(pad_batch)
    inputs = staticmethod(text_inputs)
    example = staticmethod(lambda: "an example text of a few words to trace the model with")


@register("datareader", "TextFiles")
class TextFiles(TextReader):
    """Texts from CSV or JSONL files (a text column, one or more label columns), tokenized on the fly."""

    crawler = TextFilesCrawler


@register("datareader", "Fortunes")
class Fortunes(TextReader):
    """Debian's fortunes (apt-get install fortunes): which category file a quotation comes from."""

    crawler = FortunesCrawler


@register("datareader", "Analogies")
class Analogies(TextReader):
    """Word analogies in 14 categories (gensim's bundled questions-words.txt): which category a line is from."""

    crawler = AnalogiesCrawler


@register("datareader", "PangLeePolarity")
class PangLeePolarity(TextReader):
    """Movie-review sentences, negative or positive (gensim's bundled copy of Pang & Lee's data)."""

    crawler = PolarityCrawler
