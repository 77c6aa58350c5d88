"""A natural-English corpus for the retrieval benchmark (seeded, no downloads).

`dataset.py` builds memories from invented synonym groups that only its `ConceptEmbedder`
knows; this module writes personal memories in ordinary English instead, so a real sentence
model (e.g. all-MiniLM-L6-v2) can be measured on it. Each *family* below is one fact said two
ways by hand: how a memory puts it (";"-separated variants) and how the user might later ask
for it with other words (the paraphrases share few or no content words with the memory):

    "dentist appointment for a cleaning"  <->  "visit to the dental clinic ..."

A user's memories are notes, chat exchanges and shared links. For every query one family is
made a target: a memory with that fact plus a person/place/product entity and everyday
filler; sometimes a second, different memory about the same thing (also relevant), sometimes
saved twice (same text, or the same URL shared again: one dedupe group, one answer). Hard
distractors carry the same entity with another fact of the topic, and the same topic's
"near-miss" phrases, which reuse the paraphrase's words with another meaning ("dental
insurance claim", "clinic parking"). Background memories are near-misses of every topic
(alone or in pairs) with other entities and everyday filler; ~4% of memories have no
vector yet. Query flavours:

- keyword: the entity plus one or two words of the memory ("Okafor dentist").
- paraphrase: the family's paraphrase, no entity. Families repeat in large corpora (with
  other entities), so every memory of that family in the user's corpus is relevant.
- mixed: the entity plus the paraphrase.

It returns the same `Corpus`/`Query` objects as `dataset.make_corpus`.
"""

from __future__ import annotations

import random
import re

from bench.retrieval.dataset import Corpus, CorpusBuilder, Query

# topic | memory phrasings (;) | paraphrases (;)
_FAMILIES = """
health | dentist appointment for a cleaning; booked the dentist for a teeth cleaning | visit to the dental clinic to get my teeth polished; dental hygienist checkup
health | refill my blood pressure prescription | get more hypertension medication from the pharmacy; renew the pills for high BP
health | migraine kept me awake all night | terrible headache so I couldn't sleep; bad head pain ruined my rest
health | sprained my ankle playing football | twisted foot during the soccer match; hurt my ankle joint in a game
health | annual physical exam results | yearly checkup outcome from the GP; what the doctor found at my routine medical
health | allergic reaction to penicillin | antibiotic allergy, amoxicillin gave me hives; which medicine I react badly to
cars | car won't start in the morning | vehicle fails to turn over; engine doesn't crank when cold
cars | oil change is overdue | time to service the engine lubricant; motor needs fresh oil soon
cars | flat tire on the highway | punctured wheel on the motorway; blowout while driving on the freeway
cars | car insurance renewal quote | premium for next year's auto policy; how much the vehicle coverage will cost
cars | check engine light came on | dashboard warning indicator lit up; orange motor symbol on the dash
tech | rotate the AWS access keys | replace cloud credentials; swap out the amazon secret tokens
tech | laptop battery drains too fast | notebook computer loses charge quickly; portable pc power runs out early
tech | reset my wifi router password | change the wireless network passphrase; new login for the home internet box
tech | back up the photos to an external drive | copy my pictures onto a portable disk; save images to a USB hard disk
tech | production database migration failed | schema upgrade on the live db broke; prod data store update errored out
tech | fix the memory leak in the worker | process keeps growing in RAM; service slowly eats all the heap
finance | file the tax return before April | submit the yearly IRS paperwork; send in income taxes on time
finance | monthly grocery budget | how much I spend on food shopping each month; supermarket spending limit
finance | mortgage interest rate went up | home loan became more expensive; higher APR on the house loan
finance | cancel the gym membership subscription | stop paying for the fitness club; end the recurring workout center fee
finance | split the dinner bill with friends | share the restaurant check among the group; who owes what for the meal
home | kitchen sink is leaking | water dripping under the faucet; pipe under the basin drips
home | call the plumber about the water heater | get someone to fix the boiler; hot water tank repair person
home | paint the bedroom walls light grey | repaint the sleeping room in a pale gray color; new colour for where I sleep
home | the landlord is raising the rent | lease cost going up next year; apartment owner wants more money monthly
home | mice in the attic | rodents living up under the roof; small animals scratching in the loft
home | smoke detector keeps beeping | fire alarm chirps every few minutes; the alarm on the ceiling needs a new battery
travel | passport expires next month | travel document runs out soon; need to renew my ID for going abroad
travel | book a hotel near the train station | find lodging close to the railway terminal; accommodation by the rail depot
travel | flight to Lisbon was cancelled | the plane trip to Portugal got called off; airline scrapped my Portugal trip
travel | lost luggage at the airport | bags went missing after landing; suitcase never arrived on the carousel
travel | packing list for the camping trip | what to bring when sleeping in a tent outdoors; gear for a weekend in the woods
travel | rent a car for the road trip | hire a vehicle for the drive across the country; auto rental for the long drive
work | quarterly performance review with my manager | three-month evaluation meeting with the boss; appraisal talk with my supervisor
work | ask for a salary raise | negotiate higher pay; request more money for my job
work | slides for the Monday presentation | deck for the start-of-week talk; pitch material for the weekly kickoff
work | team offsite planning | company retreat organisation; group away day arrangements
work | onboarding the new hire | welcoming the recent employee; first week plan for the person who just joined
work | deadline moved to Friday | due date pushed to the end of the week; cutoff postponed until the weekend
cooking | sourdough starter recipe | how to make a bread yeast culture; fermenting flour and water for loaves
cooking | slow cooker beef stew | crockpot meat casserole; braised chuck in the crock pot
cooking | gluten free birthday cake | wheat-free dessert for a party; celiac-safe sponge for the celebration
cooking | meal prep for the week | cook lunches in advance on Sunday; batch cooking dinners ahead of time
cooking | the oven is not heating properly | stove stays cold when baking; cooker won't reach temperature
fitness | half marathon training plan | schedule to prepare for a 21k race; running program for the 13 mile event
fitness | knee pain after squats | joint ache from leg exercises; hurts below the kneecap after lifting
fitness | yoga class on Tuesday evenings | weekly stretching session after work; mat workout midweek nights
fitness | protein intake for muscle gain | how much whey to eat to bulk up; nutrition for getting stronger
pets | dog needs his rabies shot | puppy vaccination due; the hound must get immunized at the vet
pets | cat keeps throwing up | kitten vomiting a lot; feline sick after eating
pets | find a dog sitter for the holidays | someone to look after the pup while we're away; pet care during vacation
pets | switch to grain free kibble | change the pet food to one without wheat; new dry food for the animal
family | mom's birthday gift ideas | present for my mother's celebration; what to buy mum when she turns a year older
family | school parent teacher conference | meeting with my kid's teacher; talk with the classroom instructor about my child
family | babysitter for Saturday night | someone to watch the children on the weekend evening; childcare at the end of the week
family | plan the family reunion | organise the gathering of relatives; get all the cousins together
learning | learn Spanish vocabulary with flashcards | memorize words in another language using cards; study espanol terms by spaced repetition
learning | online machine learning course | internet class on AI and neural networks; web lectures about training models
learning | practice piano scales every day | daily keyboard finger exercises; rehearse the instrument drills each morning
learning | library book is overdue | borrowed novel needs returning; late fee for the loaned paperback
garden | tomato plants have yellow leaves | the veggie seedlings are turning pale; nightshade foliage losing color
garden | mow the lawn before the weekend | cut the grass by Saturday; trim the yard turf soon
garden | aphids on the roses | tiny insects eating the flower bushes; bugs infesting the rosebush
garden | build a raised vegetable bed | make an elevated planter for veggies; wooden box for growing produce
shopping | return the shoes that don't fit | send back the sneakers that are too small; refund for the wrong size footwear
shopping | compare prices for a new washing machine | which laundry appliance is cheapest; shop around for a clothes washer
shopping | order ink cartridges for the printer | buy toner refills; replacement cartridges for printing
social | dinner reservation for our anniversary | table booked at a restaurant to celebrate the years together; romantic meal booking for the wedding date
social | wedding invitation RSVP | reply to the marriage ceremony invite; confirm we're attending the nuptials
social | catch up with an old college friend | reconnect with my university buddy; see my classmate from school days again
music | learn the guitar chords for this song | figure out the fingering for the tune on my six-string; how to play this track on acoustic
music | concert tickets for the summer tour | passes for the band's live shows in July; seats at the gig this season
"""  # noqa: E501

# topic -> phrases that reuse the topic's words (and the paraphrases') with another meaning
_NEAR_MISS = {
    "health": [
        "dental insurance claim was rejected",
        "clinic parking lot is always full",
        "pharmacy loyalty card points",
        "doctor recommended a good book",
        "checkup on the project status with the team",
        "sleep tracker app subscription",
        "medical bill payment plan",
    ],
    "cars": [
        "engine of the lawn mower is loud",
        "vehicle registration sticker design",
        "car seat for the baby",
        "driving lessons for my nephew",
        "the dash cam footage from the trip",
        "oil painting class downtown",
    ],
    "tech": [
        "cloud storage pricing comparison",
        "amazon order delivered to the wrong door",
        "keys to the storage unit",
        "router table for the woodworking shop",
        "photo album for grandma",
        "database of recipes I like",
        "password manager family plan",
    ],
    "finance": [
        "tax on the restaurant receipt",
        "budget airline seat selection",
        "gym shoes on sale",
        "interest in learning pottery",
        "food shopping list for the party",
        "monthly book club meeting",
    ],
    "home": [
        "water bottle left at the office",
        "roof top bar with friends",
        "painting by my niece",
        "room booking for the conference",
        "fire pit for the backyard",
        "alarm clock app settings",
    ],
    "travel": [
        "train the new puppy to sit",
        "station wagon for sale",
        "hotel loyalty points expire",
        "flight simulator game",
        "luggage scale is broken",
        "document scanner at work",
    ],
    "work": [
        "manager of the apartment building",
        "presentation of the dish at dinner",
        "weekly grocery delivery slot",
        "team jersey for the kids soccer league",
        "new hire paperwork for the nanny",
        "pay the parking fine",
    ],
    "cooking": [
        "birthday card for my colleague",
        "bread maker manual",
        "beef with the neighbour about the fence",
        "oven mitts are worn out",
        "week planner notebook",
    ],
    "fitness": [
        "running shoes for the kids",
        "training session for the new software",
        "protein bars in the pantry",
        "class photo day at school",
        "race car documentary",
    ],
    "pets": [
        "shot of espresso in the afternoon",
        "cat video my sister sent",
        "dog park cleanup volunteering",
        "food delivery app coupon",
        "vet school application for my cousin",
    ],
    "family": [
        "teacher appreciation week",
        "birthday of the company",
        "reunion of the band",
        "gift card balance",
        "kids menu at the diner",
    ],
    "learning": [
        "course of antibiotics finished",
        "book club picks for next year",
        "piano tuner phone number",
        "spanish restaurant downtown",
        "online banking login",
    ],
    "garden": [
        "yellow raincoat for the kids",
        "roses for Valentine's day",
        "lawn chairs for the concert",
        "bed frame assembly instructions",
        "plants versus zombies game",
    ],
    "shopping": [
        "return flight times",
        "price of the concert tickets",
        "printer at work jammed again",
        "washing the car on Sunday",
        "shoe rack for the hallway",
    ],
    "social": [
        "reservation number for the rental car",
        "old college essays",
        "friend request from a stranger",
        "dinner recipe from grandma",
    ],
    "music": [
        "song my daughter sings in the car",
        "tickets for the parking garage",
        "summer tour of the house for buyers",
        "guitar case with a broken latch",
    ],
}

_FIRST = [
    "Maria",
    "Tom",
    "Aisha",
    "Kenji",
    "Lucas",
    "Priya",
    "Omar",
    "Elena",
    "Jonas",
    "Fatima",
    "Diego",
    "Hannah",
    "Ravi",
    "Chloe",
    "Mateo",
    "Ingrid",
    "Samuel",
    "Leila",
    "Victor",
    "Nora",
    "Arjun",
    "Sofia",
    "Felix",
    "Amara",
    "Theo",
    "Yuki",
    "Marcus",
    "Zara",
    "Emil",
    "Grace",
]
_LAST = [
    "Okafor",
    "Patel",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Alvarez",
    "Nguyen",
    "Kowalski",
    "Brennan",
    "Haddad",
    "Rossi",
    "Schmidt",
    "Oyelaran",
    "Fischer",
    "Castillo",
    "Novak",
    "Ibrahim",
    "Duarte",
    "Larsen",
    "Mendes",
    "Kaur",
    "Petrov",
    "Yamada",
    "Sullivan",
    "Abadi",
    "Varga",
    "Hoffmann",
    "Delgado",
    "Mwangi",
    "Svensson",
]
_PLACES = [
    "Riverside",
    "Oakwood",
    "Maplewood",
    "Brookfield",
    "Fairview",
    "Lakeside",
    "Hillcrest",
    "Northgate",
    "Westbury",
    "Elmhurst",
    "Kingsley",
    "Ashford",
    "Bayview",
    "Cedarville",
    "Dunmore",
]
_PRODUCTS = [
    "Corolla",
    "Civic",
    "Outback",
    "ThinkPad",
    "MacBook",
    "Pixel",
    "Roomba",
    "Kindle",
    "Peloton",
    "Vitamix",
    "Dyson",
    "Fitbit",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

_FILLER = [
    "Need to sort this out before the weekend.",
    "Mentioned it to Sam over lunch.",
    "Remind me again next week.",
    "Not urgent but don't forget.",
    "Writing this down so I don't lose it.",
    "Should probably ask around first.",
    "It has been on my list for a while.",
    "Check the email thread for details.",
    "Talked about it on the phone last night.",
    "Maybe do it after work.",
    "Add it to the shared calendar.",
    "The receipt is in the drawer.",
    "Took a screenshot just in case.",
    "Could be cheaper if I wait a bit.",
    "Follow up if nobody answers by Tuesday.",
    "Good to know for next time.",
    "Read the reviews before deciding.",
    "This came up again today.",
    "Ask the neighbours what they did.",
    "Budget for it next month.",
]
_NOTE_TEMPLATES = [
    "{phrase} ({entity}). {filler}",
    "Note to self: {phrase}, {entity} on {day}. {filler}",
    "{filler} {phrase} - {entity}.",
    "{entity}: {phrase}. {filler} {filler2}",
    "Reminder for {day}: {phrase}. {entity} said to call back. {filler}",
]
_ASK = [
    "what should I do about this: {phrase}, {entity}?",
    "any advice? {phrase} ({entity})",
    "help me plan: {phrase} with {entity} on {day}",
    "{phrase} - {entity} mentioned it, what are my options?",
]
_ANSWER = [
    "For {phrase}, start by making a short list and setting a date. {filler}",
    "Sure. Since {phrase}, compare a couple of options first. {filler}",
    "Here is a plan: note who is involved ({entity}), then handle {phrase} step by step.",
    "Good question. With {phrase} the usual approach is to ask someone experienced. {filler}",
]
_SITES = ["example.com", "blog.example.org", "howto.sample.net", "news.test", "forum.demo.io"]
_SHARE_TITLES = ["Guide: {phrase}", "{phrase} - what you need to know", "How I handled {phrase}"]
_PROVIDERS = ["chatgpt", "claude", "gemini"]
_WORD = re.compile(r"[a-z0-9]+")
_QUERY_STOP = {
    "the", "a", "an", "for", "to", "of", "my", "on", "in", "at", "with", "is", "and", "i",
    "this", "next", "was", "has", "up", "too", "keeps", "came", "went", "won't", "before",
    "from", "his", "our", "that", "don't", "every", "day", "not",
}  # fmt: skip


def _families() -> list[tuple[str, list[str], list[str]]]:
    out = []
    for line in _FAMILIES.strip().splitlines():
        topic, docs, paras = (p.strip() for p in line.split("|"))
        out.append(
            (topic, [d.strip() for d in docs.split(";")], [q.strip() for q in paras.split(";")])
        )
    return out


FAMILIES = _families()
TOPICS = sorted({t for t, _, _ in FAMILIES})


class _NatGen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def entity(self) -> str:
        r = self.rng
        kind = r.random()
        if kind < 0.6:
            return f"{r.choice(_FIRST)} {r.choice(_LAST)}"
        if kind < 0.8:
            return r.choice(_PLACES)
        return f"{r.choice(_PRODUCTS)} {r.randint(2, 9)}"

    def memory(
        self, phrase: str, topic: str, entity: str, kind: str | None = None
    ) -> tuple[str, str | None, str, str | None, tuple[str, ...], str | None]:
        """(text, title, kind, provider, tags, dedupe_key) for a memory saying `phrase`."""
        r = self.rng
        kind = kind or r.choices(["note", "exchange", "share"], weights=[5, 3, 2])[0]
        f1, f2 = r.sample(_FILLER, 2)
        fill = {"phrase": phrase, "entity": entity, "day": r.choice(_DAYS)}
        fill |= {"filler": f1, "filler2": f2}
        tags = tuple(sorted({topic} | ({"todo"} if r.random() < 0.1 else set())))
        if kind == "note":
            text = r.choice(_NOTE_TEMPLATES).format(**fill)
            text = text[0].upper() + text[1:]
            title = phrase.capitalize() if r.random() < 0.4 else None
            return text, title, kind, None, tags, None
        if kind == "exchange":
            text = (
                "User: " + r.choice(_ASK).format(**fill) + "\n"
                "Assistant: " + r.choice(_ANSWER).format(**fill)
            )
            return text, None, kind, r.choice(_PROVIDERS), tags, None
        slug = "-".join([*_WORD.findall(phrase.lower())[:4], str(r.randint(1, 9999))])
        url = f"https://{r.choice(_SITES)}/{slug}"
        title = r.choice(_SHARE_TITLES).format(phrase=phrase.capitalize())
        text = f"{title}. Saved because of {entity}. {f1} {url}"
        return text, title, "share", None, tags, url


def _keywords(phrase: str) -> list[str]:
    return [w for w in _WORD.findall(phrase.lower()) if w not in _QUERY_STOP and len(w) > 2]


def make_natural_corpus(
    n_docs: int,
    *,
    seed: int = 0,
    n_queries: int = 200,
    user: str | None = None,
    now: float = 1_767_225_600.0,  # 2026-01-01
) -> Corpus:
    """A user's `n_docs` natural-English memories and `n_queries` queries with known answers."""
    g = _NatGen(seed + 7919)
    r = g.rng
    built = CorpusBuilder(r, now)
    add = built.add
    family_answers: dict[int, set[str]] = {}  # family -> answer groups saying it

    n_queries = min(n_queries, max(1, n_docs // 12))
    order = list(range(len(FAMILIES)))
    r.shuffle(order)
    flavours = ["paraphrase", "keyword", "mixed"]
    pending: list[tuple[str, int, str, str, set[str]]] = []  # (flavour, family, entity, ...)
    for qi in range(n_queries):
        flavour = flavours[qi % 3]
        fam = order[qi % len(order)]
        topic, phrasings, paras = FAMILIES[fam]
        entity = g.entity()
        answer = f"q{qi}"
        kind = r.choices(["note", "exchange", "share"], weights=[5, 3, 2])[0]
        phrase = r.choice(phrasings)
        memory = g.memory(phrase, topic, entity, kind)
        add(*memory, answer=answer)
        if r.random() < 0.15:  # saved twice: same text, or the same URL shared again
            text, title, kind, provider, tags, dedupe = memory
            if kind == "share":
                text = text.replace("Saved because of", "Sharing again, via", 1)
            add(text, title, kind, provider, tags, dedupe, answer=answer)
        relevant = {answer}
        family_answers.setdefault(fam, set()).add(answer)
        if r.random() < 0.2:  # a second, different memory about the same thing
            add(*g.memory(r.choice(phrasings), topic, entity, "exchange"), answer=answer + "b")
            relevant.add(answer + "b")
            family_answers[fam].add(answer + "b")
        # hard distractors: the same entity with near-misses of the topic, and near-misses
        # with other entities (never another family's fact: that would be an unlabelled answer
        # of that family's paraphrase queries)
        for _ in range(2):
            add(*g.memory(r.choice(_NEAR_MISS[topic]), topic, entity))
            add(*g.memory(r.choice(_NEAR_MISS[topic]), topic, g.entity()))
        para = r.choice(paras)
        if flavour == "paraphrase":
            qtext = para
        elif flavour == "keyword":
            words = _keywords(phrase)
            picked = r.sample(words, min(len(words), r.choice([1, 2])))
            qtext = " ".join([entity.split()[-1] if r.random() < 0.5 else entity, *picked])
        else:
            qtext = f"{entity} {para}"
        pending.append((flavour, fam, qtext, answer, relevant))
    while len(built.docs) < n_docs:  # background: near-misses on every topic, alone or in pairs
        topic = r.choice(TOPICS)
        phrase = r.choice(_NEAR_MISS[topic])
        if r.random() < 0.5:
            phrase += r.choice([" and ", "; also ", ", plus "])
            phrase += r.choice(_NEAR_MISS[r.choice(TOPICS)])
        add(*g.memory(phrase, topic, g.entity()))
    answers = built.trim(n_docs)
    queries = []
    for flavour, fam, qtext, _answer, relevant in pending:
        if flavour == "paraphrase":  # no entity: every memory of the family is an answer
            relevant = set(family_answers[fam])
        relevant &= answers
        if relevant:
            queries.append(Query(text=qtext, relevant=relevant, flavour=flavour))
    return built.corpus(user or f"user{seed}", queries)
