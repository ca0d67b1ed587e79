"""The AVA v2.2 atomic-action label space used by RefAVA.

Attribution: the 80 action names and ids come from the AVA Actions dataset (Gu et al., CVPR 2018),
published by Google under CC BY 4.0 (``ava_action_list_v2.2.pbtxt``); the 60-class subset is the
ActivityNet evaluation list (``ava_action_list_v2.2_for_activitynet_2019.pbtxt``). Names are
vendored here because no installable package ships them (see shared/docs/offline-assets.md).

Vector index ``i`` holds AVA id ``i + 1``, as in the official RefAtomNet loader.
"""
from __future__ import annotations

from typing import Final

NUM_CLASSES: Final = 80

AVA_ACTIONS: Final[tuple[str, ...]] = (
    "bend/bow (at the waist)", "crawl", "crouch/kneel", "dance", "fall down", "get up",
    "jump/leap", "lie/sleep", "martial art", "run/jog", "sit", "stand", "swim", "walk",
    "answer phone", "brush teeth", "carry/hold (an object)", "catch (an object)", "chop",
    "climb (e.g., a mountain)", "clink glass", "close (e.g., a door, a box)", "cook", "cut", "dig",
    "dress/put on clothing", "drink", "drive (e.g., a car, a truck)", "eat", "enter", "exit",
    "extract", "fishing", "hit (an object)", "kick (an object)", "lift/pick up",
    "listen (e.g., to music)", "open (e.g., a window, a car door)", "paint", "play board game",
    "play musical instrument", "play with pets", "point to (an object)", "press",
    "pull (an object)", "push (an object)", "put down", "read",
    "ride (e.g., a bike, a car, a horse)", "row boat", "sail boat", "shoot", "shovel", "smoke",
    "stir", "take a photo", "text on/look at a cellphone", "throw", "touch (an object)",
    "turn (e.g., a screwdriver)", "watch (e.g., TV)", "work on a computer", "write",
    "fight/hit (a person)", "give/serve (an object) to (a person)", "grab (a person)",
    "hand clap", "hand shake", "hand wave", "hug (a person)", "kick (a person)",
    "kiss (a person)", "lift (a person)", "listen to (a person)", "play with kids",
    "push (another person)", "sing to (e.g., self, a person, a group)",
    "take (an object) from (a person)", "talk to (e.g., self, a person, a group)",
    "watch (a person)",
)

#: AVA ids (1-based) of each action group.
GROUPS: Final[dict[str, tuple[int, ...]]] = {
    "PM": tuple(range(1, 15)),    # person movement
    "OM": tuple(range(15, 64)),   # object manipulation
    "PI": tuple(range(64, 81)),   # person interaction
}

#: The 20 AVA ids that are *not* in the 60-class ActivityNet evaluation subset.
_NOT_IN_AVA60: Final = frozenset(
    {2, 16, 18, 19, 21, 23, 25, 31, 32, 33, 35, 39, 40, 42, 44, 50, 53, 55, 71, 75}
)
#: AVA ids of the 60-class ActivityNet evaluation subset.
AVA60_IDS: Final[tuple[int, ...]] = tuple(i for i in range(1, 81) if i not in _NOT_IN_AVA60)

#: Training-set positives per class of RefAVA (``dataloaders/label_num.npy`` of the official
#: repository; an earlier label file, so approximate for the final split). Index = AVA id - 1.
REFAVA_TRAIN_COUNTS: Final[tuple[int, ...]] = (
    694, 2, 267, 111, 16, 64, 15, 395, 221, 185, 6061, 11264, 8, 2600, 97, 0, 5214, 1, 1, 5, 4,
    39, 0, 14, 1, 12, 267, 1, 394, 6, 5, 0, 4, 11, 0, 32, 67, 67, 0, 7, 153, 4, 4, 5, 15, 16, 38,
    215, 196, 2, 8, 0, 0, 136, 7, 28, 14, 23, 1495, 21, 198, 4, 33, 242, 80, 224, 29, 64, 25, 45,
    6, 52, 10, 7978, 3, 31, 90, 45, 7132, 12130,
)
REFAVA_TRAIN_SIZE: Final = 22_658


def name_of(ava_id: int) -> str:
    """Return the action name of a 1-based AVA id."""
    if not 1 <= ava_id <= NUM_CLASSES:
        raise ValueError(f"AVA action id must be in 1..80, got {ava_id}")
    return AVA_ACTIONS[ava_id - 1]


def group_of(ava_id: int) -> str:
    """Return 'PM', 'OM' or 'PI' for a 1-based AVA id."""
    for group, ids in GROUPS.items():
        if ava_id in ids:
            return group
    raise ValueError(f"AVA action id must be in 1..80, got {ava_id}")


assert len(AVA_ACTIONS) == NUM_CLASSES and len(REFAVA_TRAIN_COUNTS) == NUM_CLASSES
assert len(AVA60_IDS) == 60
