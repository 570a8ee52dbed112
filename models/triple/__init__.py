"""The Triple-GAN game over the label tree: a label generator, a conditional generator, one judge.

C, the project's hierarchical classifier, is the *label generator*: it gives ``p(y | x)`` as a
path through the tree (merged leaf probabilities). G (:mod:`models.gan.conditional`) gives
``p(x | y)`` conditioned on the sum of the embeddings of the nodes on the leaf's path, and a
projection discriminator D judges (image, path) pairs over the same embedding (Li et al. 2017;
Miyato & Koyama 2018). :mod:`.game` is the resumable loop (:class:`TripleGame`), :mod:`.losses`
the terms, :mod:`.players` the networks, the EMA teacher and the optimisers, :mod:`.inputs` the
checks before training, :mod:`.pictures` G's samples per node and the conditional fidelity,
:mod:`.merge` D's classifier merged with C's, and :mod:`.play` the pipeline's run. It sits above
``classifier`` and ``gan`` (it plays both), below ``calibration`` and ``evaluation``.
"""

from models.triple.game import TripleGame
from models.triple.inputs import TripleInputError, labelled_subset
from models.triple.play import TripleOutcome, play_triple_game
from models.triple.players import GameResult

__all__ = [
    "GameResult",
    "TripleGame",
    "TripleInputError",
    "TripleOutcome",
    "labelled_subset",
    "play_triple_game",
]
