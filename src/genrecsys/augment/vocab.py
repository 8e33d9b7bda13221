"""Closed vocabularies for the user profiler and the item generator.

GENRE's profiler may only answer with topics from a fixed list (and, for news, US states
as regions), so that profiles are ids an interest-fusion module can embed (eq. (1)).

- News (MIND): GENRE's 19 topics and the 50 US states plus the District of Columbia.
- Movies (ML-100K and other catalogues without a news ``category`` column): the 18
  MovieLens genres (``unknown`` left out: it says nothing about a user) plus six themes
  that cut across genres and that titles and plots often reveal (family, true story,
  classic, independent, music, sports). No regions: MovieLens users have zip codes, not
  reading regions, and a movie title rarely names a place a user cares about.

>>> news = Vocabulary.news()
>>> len(news.topics), len(news.regions)
(19, 51)
>>> Vocabulary.movies().regions
()
"""
from __future__ import annotations

from dataclasses import dataclass

from genrecsys.errors import GenrecsysError

GENRE_TOPICS: tuple[str, ...] = (
    "health", "education", "travel", "religion", "culture", "food", "fashion", "technology", "social media",
    "gender and sexuality", "race and ethnicity", "history", "economy", "finance", "real estate",
    "transportation", "weather", "disasters", "international news",
)

US_STATES: tuple[str, ...] = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware",
    "District of Columbia", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas",
    "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi",
    "Missouri", "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York",
    "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island",
    "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont", "Virginia", "Washington",
    "West Virginia", "Wisconsin", "Wyoming",
)

MOVIE_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
MOVIE_THEMES: tuple[str, ...] = ("family", "true story", "classic", "independent", "music", "sports")


@dataclass(frozen=True)
class Vocabulary:
    """The topics (ranked answers) and regions (optional) a profile may contain."""

    topics: tuple[str, ...]
    regions: tuple[str, ...] = ()
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.topics:
            raise GenrecsysError("a profile vocabulary needs at least one topic")

    @classmethod
    def news(cls) -> "Vocabulary":
        return cls(GENRE_TOPICS, US_STATES, "news")

    @classmethod
    def movies(cls) -> "Vocabulary":
        return cls(MOVIE_GENRES + MOVIE_THEMES, (), "movies")

    @classmethod
    def named(cls, name: str) -> "Vocabulary":
        """``news`` or ``movies``."""
        table = {"news": cls.news, "movies": cls.movies}
        if name not in table:
            raise GenrecsysError(f"unknown vocabulary {name!r}; choose one of: {', '.join(table)}")
        return table[name]()

    @classmethod
    def for_items(cls, columns: list[str] | tuple[str, ...]) -> "Vocabulary":
        """News vocabulary for a news-like item table (a ``category`` column), else movies."""
        return cls.news() if "category" in columns else cls.movies()
