"""One small name -> "module:Object" table per kind, imported lazily.

Listing what exists costs nothing; the object is imported only when it is looked up.

>>> from genrecsys.registry import MODELS
>>> "sasrec" in MODELS.names()
True
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from genrecsys.errors import GenrecsysError


@dataclass
class Registry:
    kind: str
    entries: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, target: str) -> None:
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self.entries[name] = target

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def get(self, name: str) -> Any:
        key = name.lower()
        if key not in self.entries:
            raise GenrecsysError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        module, _, attr = self.entries[key].partition(":")
        return getattr(importlib.import_module(module), attr)


MODELS = Registry("model")
MODELS.add("pop", "genrecsys.models.pop:Pop")
MODELS.add("bpr", "genrecsys.models.bpr:BPR")
MODELS.add("neumf", "genrecsys.models.neumf:NeuMF")
MODELS.add("lightgcn", "genrecsys.models.lightgcn:LightGCN")
MODELS.add("ngcf", "genrecsys.models.ngcf:NGCF")
MODELS.add("gru4rec", "genrecsys.models.gru4rec:GRU4Rec")
MODELS.add("sasrec", "genrecsys.models.sasrec:SASRec")
MODELS.add("hstu", "genrecsys.models.hstu:HSTU")
MODELS.add("duorec", "genrecsys.models.duorec:DuoRec")
MODELS.add("bert4rec", "genrecsys.models.bert4rec:BERT4Rec")
MODELS.add("genrec", "genrecsys.models.genrec:GenRec")
MODELS.add("tiger", "genrecsys.models.tiger:TIGER")
MODELS.add("llmsid", "genrecsys.models.llmrec:LLMSID")
MODELS.add("tallrec", "genrecsys.models.llmrec:TALLRec")
# Generators of a user's whole interaction vector (the survey's latent-variable, diffusion and GAN families)
MODELS.add("multvae", "genrecsys.models.multvae:MultVAE")
MODELS.add("multdae", "genrecsys.models.multvae:MultDAE")
MODELS.add("diffrec", "genrecsys.models.diffrec:DiffRec")
MODELS.add("ldiffrec", "genrecsys.models.ldiffrec:LDiffRec")
MODELS.add("cfgan", "genrecsys.models.cfgan:CFGAN")
# The LLM as retriever: sentence-encoder embeddings of user and item text (zero-shot or fine-tuned maps)
MODELS.add("textretrieval", "genrecsys.models.textretrieval:TextRetrieval")
MODELS.add("llmrank", "genrecsys.models.llmrank:LLMRank")
# News recommenders (matching) and CTR rankers, evaluated on impressions (GENRE Table 2)
MODELS.add("naml", "genrecsys.models.naml:NAML")
MODELS.add("lstur", "genrecsys.models.lstur:LSTUR")
MODELS.add("nrms", "genrecsys.models.nrms:NRMS")
MODELS.add("plmnr", "genrecsys.models.plmnr:PLMNR")
MODELS.add("bst", "genrecsys.models.bst:BST")
MODELS.add("dcn", "genrecsys.models.dcn:DCN")
MODELS.add("pnn", "genrecsys.models.pnn:PNN")
MODELS.add("din", "genrecsys.models.din:DIN")

DATASETS = Registry("dataset")
DATASETS.add("ml-100k", "genrecsys.data.movielens:load_ml100k")
DATASETS.add("movielens", "genrecsys.data.load:load_movielens_path")  # 1M/10M/20M/25M/32M files
DATASETS.add("amazon", "genrecsys.data.load:load_amazon_path")
DATASETS.add("yelp", "genrecsys.data.load:load_yelp_path")
DATASETS.add("atomic", "genrecsys.data.load:load_atomic_path")
DATASETS.add("mind", "genrecsys.data.load:load_mind_path")  # news.tsv + behaviors.tsv (or train/ dev/ test/)
