"""Local passage retrieval for the QA search tool (docs/method.md).

* ``Passage`` / ``Corpus`` -- passages with ``id``, ``title``, ``text``; JSONL in and out.
* ``BM25Retriever`` -- ``bm25s`` over "title. text" with PyStemmer's English stemmer and English
  stop words; saves to and loads from a directory. Over the 4,858 HotpotQA paragraphs pooled
  from ``data/hotpotqa_dev_500.jsonl`` it finds at least one gold paragraph in the top 3 for
  ~0.93 of the questions (``benchmarks/bench_search.py``). Indexing the title with the text
  matters: text alone gave 0.86.
* ``DenseRetriever`` -- cosine similarity of embeddings from any ``encode(texts) -> [n, d]``
  function, e.g. a local sentence-transformers model (an optional dependency, imported only
  by ``DenseRetriever.from_sentence_transformer``).
* ``HybridRetriever`` -- reciprocal rank fusion of several retrievers.
* ``make_search_tool`` -- the ``search(query) -> str`` tool callable handed to the agent; its
  results read "Doc 1 (Title: ...) text", one passage per line, as in Search-R1.

Retrievers share one method, ``search(query, k) -> list[Passage]``, best first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "BM25Retriever",
    "Corpus",
    "DenseRetriever",
    "HybridRetriever",
    "Passage",
    "Retriever",
    "build_hotpotqa_corpus",
    "format_passages",
    "load_hotpotqa_corpus",
    "make_search_tool",
    "supporting_title_recall",
]


@dataclass(frozen=True)
class Passage:
    """One retrievable passage (a Wikipedia paragraph for HotpotQA)."""

    id: str
    title: str
    text: str


class Corpus(Sequence[Passage]):
    """An ordered list of passages with unique ids.

    Example:
        >>> corpus = Corpus([Passage("p1", "Paris", "Paris is the capital of France.")])
        >>> len(corpus), corpus[0].title
        (1, 'Paris')
    """

    def __init__(self, passages: Iterable[Passage]) -> None:
        self._passages = list(passages)
        id_counts = Counter(passage.id for passage in self._passages)
        if len(id_counts) != len(self._passages):
            duplicates = sorted(i for i, count in id_counts.items() if count > 1)[:5]
            raise ValueError(f"passage ids must be unique; duplicated: {duplicates}")

    def __len__(self) -> int:
        return len(self._passages)

    def __getitem__(self, index):  # int -> Passage, slice -> list[Passage]
        return self._passages[index]

    def __iter__(self) -> Iterator[Passage]:
        return iter(self._passages)

    def to_jsonl(self, path: str | Path) -> None:
        """Write one ``{"id", "title", "text"}`` object per line."""
        with open(path, "w", encoding="utf-8") as file:
            for passage in self._passages:
                file.write(json.dumps(asdict(passage), ensure_ascii=False) + "\n")

    @classmethod
    def from_jsonl(cls, path: str | Path) -> Corpus:
        """Read a corpus written by ``to_jsonl`` (fields ``id``, ``title``, ``text``)."""
        passages = []
        with open(path, encoding="utf-8") as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                missing = [field for field in ("id", "title", "text") if field not in record]
                if missing:
                    raise ValueError(f"{path}, line {line_number}: missing field(s) {missing}")
                passages.append(Passage(str(record["id"]), record["title"], record["text"]))
        return cls(passages)


def build_hotpotqa_corpus(records: Iterable[dict[str, Any]]) -> Corpus:
    """Pool the ``context`` paragraphs of HotpotQA records, one passage per title.

    A title seen again keeps its first text (HotpotQA paragraphs are the lead paragraph of the
    Wikipedia article of that title, so repeats are the same article). The title is the id.
    Over ``data/hotpotqa_dev_500.jsonl``: 4,931 paragraphs, 4,858 passages.
    """
    passages: dict[str, Passage] = {}
    for record in records:
        for paragraph in record["context"]:
            title = paragraph["title"]
            if title not in passages:
                passages[title] = Passage(id=title, title=title, text=paragraph["text"])
    return Corpus(passages.values())


def load_hotpotqa_corpus(path: str | Path) -> Corpus:
    """``build_hotpotqa_corpus`` over a HotpotQA JSONL file (records with ``context``)."""
    with open(path, encoding="utf-8") as file:
        return build_hotpotqa_corpus(json.loads(line) for line in file if line.strip())


class Retriever(Protocol):
    def search(self, query: str, k: int = 3) -> list[Passage]: ...


def _indexed_text(passage: Passage) -> str:
    return f"{passage.title}. {passage.text}"


class BM25Retriever:
    """BM25 (``bm25s``, Lucene variant) over title + text, English stemming and stop words.

    Example:
        >>> retriever = BM25Retriever.from_passages([
        ...     Passage("1", "Paris", "Paris is the capital of France."),
        ...     Passage("2", "Berlin", "Berlin is the capital of Germany."),
        ... ])
        >>> [p.title for p in retriever.search("capital of Germany", k=1)]
        ['Berlin']
    """

    stemmer_language = "english"
    stopwords = "en"
    _settings_file = "paretopo_bm25.json"
    _passages_file = "passages.jsonl"

    def __init__(self, corpus: Corpus, index: Any) -> None:
        """Use ``from_passages`` or ``load``; ``index`` is a fitted ``bm25s.BM25``."""
        import Stemmer

        self.corpus = corpus
        self._index = index
        self._stemmer = Stemmer.Stemmer(self.stemmer_language)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(
            texts, stopwords=self.stopwords, stemmer=self._stemmer, return_ids=False, show_progress=False
        )

    @classmethod
    def from_passages(cls, passages: Iterable[Passage], k1: float = 1.5, b: float = 0.75) -> BM25Retriever:
        """Index passages (a ``Corpus`` or any iterable of ``Passage``)."""
        import bm25s

        corpus = passages if isinstance(passages, Corpus) else Corpus(passages)
        if len(corpus) == 0:
            raise ValueError("cannot index an empty corpus")
        retriever = cls(corpus, bm25s.BM25(k1=k1, b=b))
        retriever._index.index(retriever._tokenize([_indexed_text(p) for p in corpus]), show_progress=False)
        return retriever

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query``, shape ``[len(corpus)]`` (0 = no term in common)."""
        tokens = self._tokenize([query])[0] if query.strip() else []
        known = [token for token in tokens if token in self._index.vocab_dict]
        if not known:
            return np.zeros(len(self.corpus), dtype=np.float32)
        return self._index.get_scores(known)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """Top-``k`` passages, best first; passages sharing no term with the query are left out."""
        scores = self.scores(query)
        best = np.argsort(-scores, kind="stable")[:k]  # stable: ties go to the earlier passage
        return [self.corpus[int(i)] for i in best if scores[i] > 0]

    def save(self, directory: str | Path) -> None:
        """Write the index, the passages and the tokenizer settings into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._index.save(str(directory), show_progress=False)
        self.corpus.to_jsonl(directory / self._passages_file)
        settings = {"stemmer_language": self.stemmer_language, "stopwords": self.stopwords}
        (directory / self._settings_file).write_text(json.dumps(settings), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> BM25Retriever:
        """Load a retriever written by ``save``."""
        import bm25s

        directory = Path(directory)
        settings_path = directory / cls._settings_file
        if not settings_path.exists():
            raise FileNotFoundError(f"{directory} holds no saved BM25Retriever ({cls._settings_file} missing)")
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        expected = {"stemmer_language": cls.stemmer_language, "stopwords": cls.stopwords}
        if settings != expected:
            raise ValueError(f"index in {directory} was built with {settings}, this code uses {expected}")
        index = bm25s.BM25.load(str(directory), show_progress=False)
        return cls(Corpus.from_jsonl(directory / cls._passages_file), index)


class DenseRetriever:
    """Cosine similarity between embeddings of the query and of every passage's title + text.

    ``encode`` maps a list of strings to an array ``[n, d]``; it is called once for the corpus
    (in batches of ``batch_size``) and once per query. Embeddings are L2-normalised here.
    """

    def __init__(
        self, corpus: Corpus | Iterable[Passage], encode: Callable[[list[str]], Any], batch_size: int = 64
    ) -> None:
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        if len(self.corpus) == 0:
            raise ValueError("cannot index an empty corpus")
        self._encode = encode
        texts = [_indexed_text(p) for p in self.corpus]
        batches = [self._embed(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        self.embeddings = np.concatenate(batches)  # [num_passages, d]

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._encode(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"encode must return an array [n, d] for n={len(texts)} texts, got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    @classmethod
    def from_sentence_transformer(
        cls, corpus: Corpus | Iterable[Passage], model_name_or_path: str, device: str | None = None, batch_size: int = 64
    ) -> DenseRetriever:
        """Embed with a sentence-transformers model (a local directory when offline).

        E5-style models expect "query: " / "passage: " prefixes; add them in your own
        ``encode`` if you use one -- this helper embeds the raw text.
        """
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ImportError(
                "DenseRetriever.from_sentence_transformer needs sentence-transformers: "
                "`pip install sentence-transformers`, plus the embedding model on disk or a reachable "
                "Hugging Face Hub. BM25Retriever needs neither."
            ) from error
        model = SentenceTransformer(model_name_or_path, device=device)
        return cls(corpus, lambda texts: model.encode(texts, batch_size=batch_size), batch_size=batch_size)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """Top-``k`` passages by cosine similarity, best first."""
        similarity = self.embeddings @ self._embed([query])[0]
        best = np.argsort(-similarity, kind="stable")[:k]
        return [self.corpus[int(i)] for i in best]


class HybridRetriever:
    """Reciprocal rank fusion: score(p) = sum over retrievers of 1 / (rrf_k + rank of p).

    Each retriever contributes its top ``depth`` passages; passages are matched by id.
    """

    def __init__(self, retrievers: Sequence[Retriever], rrf_k: int = 60, depth: int = 50) -> None:
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers = list(retrievers)
        self.rrf_k = rrf_k
        self.depth = depth

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """Top-``k`` passages by fused score, best first (ties: first seen wins)."""
        fused: dict[str, float] = {}
        passages: dict[str, Passage] = {}
        for retriever in self.retrievers:
            for rank, passage in enumerate(retriever.search(query, k=self.depth), start=1):
                fused[passage.id] = fused.get(passage.id, 0.0) + 1.0 / (self.rrf_k + rank)
                passages.setdefault(passage.id, passage)
        ranked = sorted(fused, key=lambda passage_id: -fused[passage_id])
        return [passages[passage_id] for passage_id in ranked[:k]]


def format_passages(passages: Sequence[Passage]) -> str:
    """Search results as the agent sees them, one line per passage.

    Example:
        >>> format_passages([Passage("1", "Paris", "Paris is the capital of France.")])
        'Doc 1 (Title: Paris) Paris is the capital of France.'
    """
    return "\n".join(f"Doc {i} (Title: {p.title}) {p.text}" for i, p in enumerate(passages, start=1))


def make_search_tool(retriever: Retriever, k: int = 3) -> Callable[[str], str]:
    """The search tool callable for the agent: ``search(query) -> str`` over ``retriever``.

    Its signature and Google-style docstring give TRL / ``transformers.utils.get_json_schema``
    the tool description.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    def search(query: str) -> str:
        """Search Wikipedia for passages relevant to a query.

        Args:
            query: What to look up, e.g. a name or a short question.

        Returns:
            The best matching passages, one per line as "Doc i (Title: ...) text".
        """
        if not isinstance(query, str) or not query.strip():
            return "Error: empty query; write what to search for."
        passages = retriever.search(query, k=k)
        return format_passages(passages) if passages else "No passages found."

    return search


def supporting_title_recall(
    retriever: Retriever, records: Iterable[dict[str, Any]], ks: Sequence[int] = (3, 5)
) -> dict[str, float]:
    """Share of HotpotQA questions whose gold paragraphs are retrieved, at each k.

    Each record needs ``question`` and ``supporting_titles``; the question is the query.
    Returns ``{"recall@3/one": ..., "recall@3/both": ..., ...}``: "one" = at least one gold
    title in the top k, "both" = every gold title in the top k.
    """
    hits = {f"recall@{k}/{kind}": 0 for k in ks for kind in ("one", "both")}
    count = 0
    for record in records:
        retrieved = [passage.title for passage in retriever.search(record["question"], k=max(ks))]
        gold = set(record["supporting_titles"])
        for k in ks:
            top = set(retrieved[:k])
            hits[f"recall@{k}/one"] += bool(top & gold)
            hits[f"recall@{k}/both"] += gold <= top
        count += 1
    if count == 0:
        raise ValueError("no records to measure recall on")
    return {name: value / count for name, value in hits.items()}
