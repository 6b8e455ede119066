"""Writes `sat_tf/models/data/imagenet_words.json`: the 1,000 ImageNet-1k classes (standard order,
the order of EfficientNet-Lite's classifier) with their WordNet synset, name and the caption word
they stand for (or none), as `sat_tf.models.imagenet_tagger` reads them.

The synsets and names come from timm's `imagenet_synsets.txt` and `imagenet_synset_to_lemma.txt`
(Apache-2.0; `pip download timm --no-deps`, then unzip the wheel's `timm/data/_info/`). The word
of a class is, in order: an explicit choice below (a class that names a kind of a caption noun:
trolleybus -> bus, airliner -> airplane), the word of its group (the 118 dog breeds -> dog, the
bird, fish, snake, monkey classes), else the last word of its first name (Indian elephant ->
elephant). Classes whose word is not a plain object noun get none.

    python benchmarks/build_imagenet_words.py --timm-info /tmp/timm_dl/timm/data/_info
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# ImageNet index ranges whose classes are all kinds of one caption noun (inclusive).
GROUPS = [((0, 6), "fish"), ((7, 24), "bird"), ((80, 100), "bird"), ((127, 146), "bird"), ((52, 68), "snake"),
          ((151, 268), "dog"), ((269, 280), "wolf"), ((281, 285), "cat"), ((294, 297), "bear"),
          ((369, 382), "monkey"), ((389, 397), "fish"), ((33, 37), "turtle"), ((38, 48), "lizard"),
          ((300, 320), "insect"), ((321, 326), "butterfly")]
WORDS = {
    "wolf": {269: "wolf", 270: "wolf", 271: "wolf", 272: "coyote", 273: "dog", 274: "dog", 275: "dog",
             277: "fox", 278: "fox", 279: "fox", 280: "fox", 276: "hyena"},
    "animals": {286: "cougar", 287: "lynx", 288: "leopard", 289: "leopard", 290: "jaguar", 291: "lion", 292: "tiger",
                293: "cheetah", 339: "horse", 340: "zebra", 345: "cow", 346: "buffalo", 347: "bison", 348: "sheep",
                349: "sheep", 354: "camel", 355: "llama", 385: "elephant", 386: "elephant", 101: "elephant",
                388: "panda", 387: "panda", 330: "rabbit", 331: "rabbit", 332: "rabbit", 341: "pig", 342: "pig",
                343: "pig", 344: "hippo", 350: "goat", 351: "antelope", 352: "antelope", 353: "gazelle",
                356: "weasel", 360: "otter", 361: "skunk", 362: "badger", 150: "sea lion", 148: "whale",
                147: "whale", 149: "dugong", 2: "shark", 3: "shark", 4: "shark", 49: "crocodile", 50: "alligator",
                30: "frog", 31: "frog", 32: "frog", 383: "lemur", 384: "lemur", 327: "starfish"},
    "vehicles": {404: "airplane", 895: "airplane", 908: "airplane", 405: "airship", 417: "balloon",
                 407: "ambulance", 436: "car", 468: "taxi", 511: "car", 609: "jeep", 627: "limousine",
                 656: "van", 661: "car", 717: "truck", 734: "van", 751: "car", 817: "car", 575: "golf cart",
                 444: "bicycle", 671: "bike", 670: "motorcycle", 665: "scooter", 466: "train", 547: "train",
                 565: "train", 820: "train", 705: "train", 829: "tram", 874: "bus", 779: "bus", 654: "bus",
                 555: "fire truck", 569: "truck", 864: "truck", 867: "truck", 675: "truck", 757: "camper",
                 847: "tank", 803: "snowplow", 802: "snowmobile", 573: "go-kart", 612: "rickshaw",
                 866: "tractor", 603: "carriage", 408: "tank", 472: "canoe", 554: "boat", 576: "gondola",
                 625: "boat", 628: "ship", 724: "ship", 780: "ship", 814: "boat", 833: "submarine", 871: "boat",
                 914: "boat", 484: "boat", 510: "ship", 693: "paddle", 403: "ship"},
    "things": {861: "toilet", 999: "toilet paper", 963: "pizza", 954: "banana", 937: "broccoli", 938: "cauliflower",
               948: "apple", 949: "strawberry", 950: "orange", 951: "lemon", 953: "pineapple", 934: "hot dog",
               933: "burger", 927: "dessert", 928: "ice cream", 930: "bread", 931: "bagel", 932: "pretzel",
               959: "pasta", 923: "plate", 967: "coffee", 968: "cup", 504: "mug", 898: "bottle", 907: "wine",
               440: "bottle", 720: "bottle", 737: "bottle", 620: "laptop", 681: "laptop", 527: "computer",
               664: "monitor", 782: "screen", 851: "television", 487: "phone", 707: "phone", 528: "phone",
               508: "keyboard", 673: "mouse", 590: "camera", 759: "camera", 732: "camera", 879: "umbrella",
               414: "backpack", 795: "skis", 796: "ski", 890: "volleyball", 805: "soccer ball", 430: "basketball",
               852: "tennis ball", 768: "football", 522: "croquet ball", 574: "golf ball", 722: "ping-pong ball",
               429: "baseball", 981: "baseball player", 983: "scuba diver", 982: "groom", 703: "bench",
               532: "table", 423: "chair", 559: "chair", 765: "chair", 857: "throne", 831: "bed", 564: "bed",
               520: "crib", 846: "lamp", 619: "lamp", 453: "bookcase", 765 + 0: "chair", 892: "clock",
               409: "clock", 530: "clock", 892 + 0: "clock", 762: "restaurant", 660: "mosque", 497: "church",
               698: "palace", 483: "castle", 580: "greenhouse", 449: "boathouse", 525: "dam", 839: "bridge",
               888: "bridge", 821: "bridge", 975: "lake", 976: "cliff", 970: "mountain", 978: "beach",
               979: "valley", 980: "volcano", 973: "coral reef", 977: "sandbar", 974: "geyser", 972: "cliff",
               438: "beaker", 849: "teapot", 505: "coffeepot", 550: "espresso machine", 651: "microwave",
               766: "refrigerator", 760: "refrigerator", 534: "dishwasher", 567: "stove", 859: "toaster",
               827: "stove", 545: "fan", 896: "sink", 435: "bathtub", 876: "bathtub", 794: "shower curtain",
               799: "sliding door", 904: "window", 905: "window", 706: "patio", 919: "street sign",
               920: "traffic light", 733: "pole", 919 + 0: "street sign", 818: "spotlight", 706 + 0: "patio",
               801: "snorkel", 977 + 0: "sandbar", 701: "parachute", 693 + 0: "paddle", 417 + 0: "balloon",
               585: "hair dryer", 631: "lipstick", 837: "sunglasses", 836: "sunglasses", 400: "academic gown",
               869: "trench coat", 841: "sweatshirt", 610: "jersey", 617: "lab coat", 655: "miniskirt",
               834: "suit", 906: "tie", 457: "bow tie", 515: "cowboy hat", 808: "sombrero", 560: "helmet",
               518: "helmet", 671 + 0: "bike", 746: "puck", 722 + 0: "ping-pong ball", 768 + 0: "football",
               795 + 0: "skis", 445: "bikini", 639: "swimsuit", 842: "swimsuit", 433: "sandal", 774: "sandal",
               770: "shoe", 630: "loafer", 514: "boot", 879 + 0: "umbrella", 763: "revolver", 413: "rifle",
               764: "rifle", 767: "eraser", 418: "pen", 563: "pen", 623: "knife", 499: "cleaver", 813: "spatula",
               910: "spoon", 926: "soup", 925: "soup", 924: "guacamole", 935: "mashed potato", 936: "cabbage",
               939: "zucchini", 940: "squash", 941: "squash", 942: "squash", 943: "cucumber", 945: "pepper",
               947: "mushroom", 952: "fig", 955: "fruit", 956: "custard apple", 957: "pomegranate", 962: "meatloaf",
               964: "potpie", 965: "burrito", 966: "wine", 969: "eggnog", 960: "chocolate", 961: "dough",
               929: "popsicle", 558: "flute", 402: "guitar", 546: "guitar", 579: "piano", 881: "piano",
               889: "violin", 486: "cello", 683: "oboe", 776: "saxophone", 513: "trumpet", 875: "trombone",
               541: "drum", 542: "drum", 566: "horn", 401: "accordion", 642: "marimba", 577: "gong",
               593: "harmonica", 594: "harp", 822: "drum", 684: "ocarina", 699: "pan flute", 432: "bassoon"},
}
# window screen, window shade, hair spray, lotion, mobile home, rotisserie: no caption noun of their own
NO_WORD = {"n04589890", "n04590129", "n03476991", "n03690938", "n03776460", "n04111531"}
# checked against the names: a medicine chest is the mirror cabinet of a bathroom photo
FIXES = {433: "cap", 567: "pan", 590: "computer", 408: "vehicle", 648: "mirror", 589: "hair dryer",
         548: None, 598: None, 480: None, 786: None}


def class_word(index: int, names: str) -> str | None:
    if index in FIXES:
        return FIXES[index]
    for table in WORDS.values():
        if index in table:
            return table[index]
    for (low, high), word in GROUPS:
        if low <= index <= high:
            return word
    head = names.split(",")[0].strip().split()[-1].lower()
    return head if head.isalpha() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm-info", required=True, help="timm/data/_info from the timm wheel")
    parser.add_argument("--output", default="sat_tf/models/data/imagenet_words.json")
    args = parser.parse_args()
    info = Path(args.timm_info)
    synsets = info.joinpath("imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in info.joinpath("imagenet_synset_to_lemma.txt").read_text().splitlines())
    classes = [{"synset": synset, "name": lemmas[synset],
                "word": None if synset in NO_WORD else class_word(index, lemmas[synset])}
               for index, synset in enumerate(synsets)]
    if len(classes) != 1000:
        raise SystemExit(f"expected 1,000 ImageNet-1k synsets, got {len(classes)}")
    Path(args.output).write_text(json.dumps({"source": "ImageNet-1k synsets and names from timm (Apache-2.0); "
                                                       "words: benchmarks/build_imagenet_words.py",
                                             "classes": classes}, indent=0) + "\n", encoding="utf-8")
    print(f"{args.output}: {sum(c['word'] is not None for c in classes)} of 1000 classes have a word")


if __name__ == "__main__":
    main()
