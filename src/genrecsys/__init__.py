"""genrecsys: generative recommender systems on one tested core.

Importing the package is cheap: torch and the models load only when used.
"""
__version__ = "0.1.0"

from genrecsys.errors import GenrecsysError

__all__ = ["GenrecsysError", "__version__"]
