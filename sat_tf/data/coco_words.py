"""Caption words -> the COCO object category they name (man, woman, boy -> person; puppy -> dog;
bike -> bicycle; tv, television, monitor -> tv ...), for scoring what a caption or a tag names
against COCO instance annotations."""

from __future__ import annotations

COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

# Words (caption words and tag words) that name a category other than by its own name.
SYNONYMS = {
    "person": ("man", "men", "woman", "women", "boy", "boys", "girl", "girls", "people", "child", "children", "kid",
               "kids", "player", "baseball player", "guy", "lady", "person", "persons", "groom", "skier", "surfer",
               "rider", "baby", "toddler", "scuba diver"),
    "bicycle": ("bike", "bikes", "bicycles"), "car": ("cars", "taxi", "van", "jeep", "limousine", "suv"),
    "motorcycle": ("motorcycles", "motorbike", "scooter", "moped"), "airplane": ("plane", "planes", "airplanes",
                                                                              "jet", "airliner"),
    "bus": ("buses",), "train": ("trains", "tram", "locomotive"), "truck": ("trucks", "fire truck"),
    "boat": ("boats", "ship", "canoe", "kayak", "sailboat"), "traffic light": ("traffic lights",),
    "stop sign": ("street sign",), "parking meter": ("meter",), "bench": ("benches",), "bird": ("birds",),
    "cat": ("cats", "kitten"), "dog": ("dogs", "puppy", "puppies"), "horse": ("horses", "pony"),
    "sheep": ("lamb",), "cow": ("cows", "cattle", "bull"), "elephant": ("elephants",), "bear": ("bears",),
    "zebra": ("zebras",), "giraffe": ("giraffes",), "skis": ("ski",), "sports ball": ("ball", "soccer ball",
                                                                                    "football", "basketball",
                                                                                    "volleyball", "tennis ball",
                                                                                    "baseball"),
    "tennis racket": ("racket", "racquet"), "bottle": ("bottles",), "wine glass": ("wine",), "cup": ("cups", "mug"),
    "bowl": ("bowls",), "banana": ("bananas",), "orange": ("oranges",), "pizza": ("pizzas",),
    "donut": ("donuts", "doughnut", "doughnuts"), "cake": ("cakes", "dessert"), "chair": ("chairs",),
    "couch": ("sofa",), "bed": ("beds",), "dining table": ("table", "tables", "desk"), "toilet": ("toilets",),
    "tv": ("television", "monitor", "screen", "tvs"), "laptop": ("laptops", "computer"),
    "cell phone": ("phone", "phones", "cellphone"), "oven": ("stove",), "sink": ("sinks",),
    "refrigerator": ("fridge",), "book": ("books",), "clock": ("clocks",), "teddy bear": ("teddy",),
    "hair drier": ("hair dryer",), "umbrella": ("umbrellas",), "kite": ("kites",), "surfboard": ("surfboards",),
    "skateboard": ("skateboards",),
}

_CATEGORY_OF_WORD = {category: category for category in COCO_CATEGORIES}
_CATEGORY_OF_WORD.update({word: category for category, words in SYNONYMS.items() for word in words})


def coco_category(word: str) -> str | None:
    """The COCO category `word` names ("puppy" -> "dog"), or None."""
    return _CATEGORY_OF_WORD.get(word.lower())
