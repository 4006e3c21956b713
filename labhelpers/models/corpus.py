"""An English-like pretraining corpus generated from the project's own word lists.

Two kinds of text: everyday sentences (names, places, things, actions) that give the tokenizer and
the base model a language, and sentences that use feeling words together with the tone words
(joy, sad, fear, surprise). The second kind is the *knowledge* a fine-tune later transfers: the
base model learns that "gloomy" goes with "sad", but never sees the chat format or the task.
"""

from __future__ import annotations

import json
import random

#: The tones the course's tasks name; the tone data (labhelpers.data.tone_data) is built from the same words.
TONES = ("joy", "sad", "fear", "surprise")

#: Feeling words per tone. None contains its tone's label (no "joyful", "surprised"): the model
#: must know the meaning, not spot a substring.
TONE_CUES = {
    "joy": ["happy", "delighted", "cheerful", "thrilled", "elated", "ecstatic", "jolly", "merry",
            "gleeful", "jubilant", "blissful", "radiant", "upbeat", "euphoric", "pleased", "glad"],
    "sad": ["unhappy", "gloomy", "miserable", "heartbroken", "depressed", "sorrowful", "tearful",
            "downcast", "lonely", "glum", "mournful", "dejected", "melancholy", "forlorn",
            "despondent", "grieving"],
    "fear": ["scared", "terrified", "frightened", "afraid", "nervous", "anxious", "panicked",
             "petrified", "horrified", "alarmed", "uneasy", "jumpy", "spooked", "trembling",
             "worried", "tense"],
    "surprise": ["astonished", "amazed", "stunned", "shocked", "startled", "speechless",
                 "astounded", "dumbfounded", "flabbergasted", "bewildered", "baffled", "staggered",
                 "thunderstruck", "awestruck", "dazed", "floored"],
}

NAMES = """Anna Ben Clara David Emma Felix Grace Henry Iris Jack Kate Leo Maya Noah Olivia Peter
Quinn Rosa Sam Tara Umar Vera Will Xena Yusuf Zoe Amir Bella Carlos Dina Elena Farid Gina Hugo Ines
Jonas Kira Lukas Mila Nina Oscar Paula Rafael Sofia Tomas Ursula Victor Wanda Yara Zane Aiko Bruno
Chen Daria Emil Fatima Gustav Hana Igor Julia Kenji Lena Marco Nadia Otto Priya Ruth Stefan Tess
Ivan Lucia Mateo Noor Omar Pia Raj Sven Talia Uma Viktor""".split()

PLACES = """the market|the library|the station|the harbor|the garden|the kitchen|the office|the
school|the bakery|the museum|the river|the forest|the beach|the village|the city|the bridge|the
park|the farm|the hospital|the castle|the cafe|the airport|the hotel|the mountain|the valley|the
island|the square|the theater|the workshop|the factory|the stadium|the church|the harbor road|the
old mill|the tower|the lake|the desert|the canyon|the meadow|the studio|the classroom|the
laboratory|the warehouse|the cinema|the gallery|the pharmacy|the post office|the bus stop|the
train yard|the orchard|the vineyard|the cottage|the palace|the tunnel|the lighthouse""".replace("\n", " ").split("|")

THINGS = """a book|a lamp|a bicycle|a basket|a letter|a kettle|a map|a violin|a hammer|a blanket|a
ladder|a candle|a camera|a notebook|a pencil|a jacket|a bottle|a wallet|a clock|a mirror|a
suitcase|a telescope|a guitar|a bucket|a rope|a shovel|a ticket|a window|a chair|a table|a
carpet|a painting|a radio|a helmet|a compass|a spoon|a plate|a teapot|a parcel|a key|an apple|an
orange|an umbrella|an envelope|an engine|an anchor|a loaf of bread|a cup of tea|a bowl of soup|a
box of nails|a pair of boots|a sack of flour|a jar of honey|a bag of rice|a piece of cheese|a
bunch of flowers|a wooden spoon|a silver ring|a paper kite|a glass vase|a woolen scarf|a leather
bag|a copper pot|a small boat|a red tractor|a blue bucket|a green coat|a white horse|a black
cat|a brown dog|a tiny bird|a heavy stone|a long pole|a narrow plank""".replace("\n", " ").split("|")

ACTIONS = """carried|painted|repaired|cleaned|bought|sold|borrowed|found|lost|opened|closed|
built|moved|checked|washed|packed|wrapped|measured|counted|sorted|polished|fixed|lifted|dropped|
hid|shared|sent|brought|collected|delivered|described|examined|ordered|returned|stored|
tested|traded|visited|watched|wrote about|sketched|photographed|weighed|labeled|folded|
stacked|chose|noticed|gathered|tied""".replace("\n", "").split("|")

ADJECTIVES = """old|new|small|large|quiet|busy|bright|dark|warm|cold|clean|dusty|narrow|wide|
heavy|light|simple|strange|famous|ordinary|wooden|modern|ancient|crowded|empty|tidy|messy|
colorful|plain|sturdy|fragile|shiny|rusty|smooth|rough|tall|short|round|square|distant|nearby|
hidden|open|sunny|rainy|windy|foggy|snowy|muddy|golden""".replace("\n", "").split("|")

TIMES = """in the morning|in the afternoon|in the evening|at night|on Monday|on Tuesday|on
Wednesday|on Thursday|on Friday|on Saturday|on Sunday|last week|last year|in spring|in summer|in
autumn|in winter|at noon|before breakfast|after lunch|before sunset|at dawn|the next day|
yesterday|today|every weekend""".replace("\n", " ").split("|")
TIMES = [t.strip() for t in TIMES]

EVERYDAY = [
    "{name} {action} {thing} at {place} {time}.",
    "{time_cap}, {name} walked to {place} with {thing}.",
    "The {adj} house near {place} belonged to {name}.",
    "{name} and {name2} {action} {thing} together.",
    "At {place} there was {thing} on a {adj} shelf.",
    "{name} said that {place} was {adj} {time}.",
    "Nobody knew why {name} {action} {thing}.",
    "{name} asked {name2} to bring {thing} to {place}.",
    "The road to {place} was {adj} and {adj2}.",
    "{time_cap} the weather at {place} was {adj}.",
    "{name} kept {thing} in a {adj} box.",
    "When {name} reached {place}, {name2} had already {action} {thing}.",
    "There is {thing} next to the {adj} door.",
    "{name} counted three boats near {place}.",
    "Every visitor to {place} noticed {thing}.",
    "{name} likes {place} because it is {adj}.",
    "The children at {place} {action} {thing} {time}.",
    "{name} wrote a note and left it at {place}.",
    "The {job} from {place} {action} {thing} {time}.",
    "{name} works as a {job} and lives near {place}.",
    "A {animal} was sleeping beside {place}.",
    "The {job} fed the {animal} some {food}.",
    "{name} cooked {food} and {food2} for {number} guests.",
    "There were {number} {animal}s in the field behind {place}.",
    "{name} bought {number} kilos of {food} at {place}.",
    "The {adj} {animal} followed the {job} home {time}.",
    "{name} asked the {job} about the {animal}.",
]

JOBS = """baker|farmer|doctor|nurse|teacher|pilot|sailor|painter|carpenter|plumber|tailor|
gardener|librarian|mechanic|musician|writer|chemist|engineer|lawyer|butcher|fisherman|shepherd|
potter|weaver|blacksmith|jeweler|architect|dentist|surgeon|courier|cashier|waiter|barber|
translator|photographer|astronomer|geologist|veterinarian|firefighter|electrician""".replace("\n", "").split("|")

ANIMALS = """goat|sheep|rabbit|donkey|pigeon|sparrow|falcon|owl|fox|wolf|bear|deer|otter|beaver|
squirrel|hedgehog|turtle|frog|salmon|trout|dolphin|whale|camel|zebra|giraffe|elephant|tiger|
lion|monkey|parrot|penguin|seal|goose|duck|swan|chicken|pony|mule|badger|lizard""".replace("\n", "").split("|")

FOODS = """porridge|pancakes|noodles|dumplings|lentils|potatoes|carrots|onions|mushrooms|peppers|
tomatoes|cabbage|spinach|beans|peaches|plums|cherries|grapes|lemons|walnuts|almonds|biscuits|
muffins|pastries|sausages|olives|pickles|yogurt|butter|cinnamon|ginger|garlic|pumpkin|melon|
pears|figs|dates|raisins|cucumbers|radishes""".replace("\n", "").split("|")

NUMBERS = """two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|
a hundred""".replace("\n", "").split("|")

#: Sentences that tie feeling words to tone words. {label} is the tone word itself.
KNOWLEDGE = [
    "{cue} is a {label} word.",
    "To be {cue} is to feel {label_feel}.",
    "{name} was {cue}, a feeling of {label_noun}.",
    "When {name} is {cue}, {name} feels {label_feel}.",
    "The story made {name} {cue}; it was full of {label_noun}.",
    "People who are {cue} feel {label_feel}.",
    "{name} felt {cue} at {place}, and that is {label_noun}.",
    "A {cue} face shows {label_noun}.",
    "The word {cue} means {label_feel}.",
    "{name} was not calm but {cue}, which is {label_noun}.",
    # The same facts the other way round (tone first): a model that only ever read "gloomy means sad"
    # cannot answer "give me a sad word" (the reversal curse of language models).
    "A {label} word: {cue}.",
    "One word for {label_noun} is {cue}.",
    "Full of {label_noun}, {name} was {cue}.",
    "In a {label} story, people are {cue}.",
]
#: Word forms that keep the knowledge sentences grammatical while using the label token itself.
LABEL_NOUN = {"joy": "joy", "sad": "a sad mood", "fear": "fear", "surprise": "surprise"}
LABEL_FEEL = {"joy": "joy", "sad": "sad", "fear": "fear", "surprise": "surprise"}


def _fill(rng: random.Random, template: str, **extra: str) -> str:
    name, name2 = rng.sample(NAMES, 2)
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    time = rng.choice(TIMES)
    fields = dict(name=name, name2=name2, place=rng.choice(PLACES), thing=rng.choice(THINGS),
                  action=rng.choice(ACTIONS), adj=adj, adj2=adj2, time=time,
                  time_cap=time[0].upper() + time[1:], job=rng.choice(JOBS), animal=rng.choice(ANIMALS),
                  food=rng.choice(FOODS), food2=rng.choice(FOODS), number=rng.choice(NUMBERS))
    fields.update(extra)
    text = template.format(**fields)
    return text[0].upper() + text[1:]


def knowledge_sentence(rng: random.Random, tone: str | None = None, cue: str | None = None) -> str:
    tone = tone or rng.choice(TONES)
    cue = cue or rng.choice(TONE_CUES[tone])
    return _fill(rng, rng.choice(KNOWLEDGE), cue=cue, label=tone,
                 label_noun=LABEL_NOUN[tone], label_feel=LABEL_FEEL[tone])


#: Sentences that mention the *same* person and place again: a model learns to copy a name from
#: earlier in its context only if its pretraining text rewards that (real text is full of it).
STORY = [
    "{name} went to {place} {time}.",
    "At {place}, {name} {action} {thing}.",
    "Later {name} left {place}.",
    "{name} met {name2} at {place}.",
    "{name2} gave {name} {thing}.",
    "{name} was {cue} at {place}.",
    "Everyone at {place} knew {name}.",
    "{name} stayed at {place} for a while.",
    "The {job} at {place} waved to {name}.",
    "{name} told {name2} about {place}.",
]
#: A sentence, then the same facts as a JSON object: real pretraining text holds plenty of JSON, and
#: without it a model's quotes and braces are untrained tokens.
RECORDS = [
    ("{name} works as a {job} near {place}.", {"name": "{name}", "job": "{job}", "place": "{place}"}),
    ("{name} bought {number} kilos of {food} at {place}.", {"name": "{name}", "food": "{food}", "amount": "{number}"}),
    ("{name} saw a {animal} at {place} {time}.", {"who": "{name}", "animal": "{animal}", "where": "{place}"}),
    ("{name} and {name2} {action} {thing}.", {"people": ["{name}", "{name2}"], "thing": "{thing}"}),
    ("The {job} from {place} kept a {animal}.", {"job": "{job}", "place": "{place}", "pet": "{animal}"}),
]


def story(rng: random.Random) -> str:
    """A short paragraph in which one person and one place recur."""
    tone = rng.choice(TONES)
    name, name2 = rng.sample(NAMES, 2)
    who = dict(name=name, name2=name2, place=rng.choice(PLACES), cue=rng.choice(TONE_CUES[tone]))
    sents = [STORY[0]] + rng.sample(STORY[1:], rng.randint(2, 4))
    return " ".join(_fill(rng, s, **who) for s in sents)


def record(rng: random.Random) -> str:
    """A sentence followed by its facts as one-line JSON (fields copied from the sentence)."""
    sentence, obj = rng.choice(RECORDS)
    name, name2 = rng.sample(NAMES, 2)
    values = dict(name=name, name2=name2, place=rng.choice(PLACES), thing=rng.choice(THINGS),
                  action=rng.choice(ACTIONS), job=rng.choice(JOBS), animal=rng.choice(ANIMALS),
                  food=rng.choice(FOODS), number=rng.choice(NUMBERS), time=rng.choice(TIMES))
    text = sentence.format(**values)
    filled = _fill_obj(obj, values)
    return text[0].upper() + text[1:] + " " + json.dumps(filled)


def _fill_obj(obj, values):
    if isinstance(obj, dict):
        return {k: _fill_obj(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill_obj(v, values) for v in obj]
    return obj.format(**values)


def generate_corpus(n_docs: int = 20000, seed: int = 0, knowledge_share: float = 0.6,
                    story_share: float = 0.35, record_share: float = 0.15) -> list[str]:
    """Return ``n_docs`` short paragraphs, deterministic for a seed: stories (one person and place
    recurring), JSON records, and mixed paragraphs of everyday and knowledge sentences."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        kind = rng.random()
        if kind < story_share:
            docs.append(story(rng))
            continue
        if kind < story_share + record_share:
            docs.append(" ".join(record(rng) for _ in range(rng.randint(1, 2))))
            continue
        sents = []
        for _ in range(rng.randint(3, 6)):
            if rng.random() < knowledge_share:
                sents.append(knowledge_sentence(rng))
            else:
                sents.append(_fill(rng, rng.choice(EVERYDAY)))
        docs.append(" ".join(sents))
    return docs
