"""The model's fixed numbers shared by the torch model and its numpy prompt pass.

model/gpt.py and model/copy_head.py (torch) and model/numpy_gpt.py (numpy, the default chat
path without torch) compute the same forward; the numbers that define it live here, once, in a
module that imports neither.
"""

N_MATCH_FLAGS = 4  # input flags: exact, lower-case, 5-letter prefix, translation (reader.py)
MATCH_MASK = (1 << N_MATCH_FLAGS) - 1

# The retrieval encoder's view of each passage unit (reader.py `relevance_codes`), packed above the
# match flags in the same per-token int, so every path that carries the flags carries it too:
# bits 4-6 the unit's rank among the units read by cosine to the question (1 = most similar; 1-5
# as is, 6 = 6th-10th, 7 = below; 0 = not a unit), bits 7-9 its cosine bin (0 = none).
# Bits 10-12 (`GPTConfig.structure`): where the unit stands relative to the most similar units in
# its passage, the note structure the encoder does not see (a heading or lead-in echoing the
# question is often the most similar line; the answer follows it): 1 = the unit right after the
# rank-1 unit, 2 = the second unit after it, 3 = right after a rank-2 or rank-3 unit, 4 = the
# second after one, 0 = none of these.
RANK_SHIFT = 4
COS_SHIFT = 7
AFTER_SHIFT = 10
N_REL = 8  # values of each 3-bit field

# The copy head's feature names, in the order of its feature weights.
COPY_FEATURES = (
    "follows_last",
    "follows_last_two",
    "question_match",
    "longest_run",
    "top_unit",
    "top3_unit",
    "after_top",
    "after_top3",
)
RUN_CAP = 8  # longest token run compared by `longest_run`
# Feature weights are multiplied by this, so AdamW moves them FEATURE_GAIN× faster than a single
# matrix entry: a feature must reach a score of several units within a few hundred steps.
FEATURE_GAIN = 4.0
LOG_EPS = 1e-30  # log(p) of a token with no mass in either head
