"""Names the simulated ERP draws its customers, products and warehouses from."""

from __future__ import annotations

#: category → (SKU prefix, product names).
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Beverages": (
        "BEV",
        (
            "Espresso Beans 1kg",
            "Green Tea 100 bags",
            "Sparkling Water 12x1l",
            "Cold Brew 6-pack",
            "Oat Milk 8x1l",
            "Cocoa Powder 500g",
            "Mango Juice 6x1l",
            "Chai Syrup 750ml",
        ),
    ),
    "Electronics": (
        "ELE",
        (
            "USB-C Charger 65W",
            "Wireless Mouse",
            "Mechanical Keyboard",
            "27in Monitor",
            "Noise-Cancelling Headset",
            "HDMI Cable 2m",
            "Webcam 1080p",
            "Power Bank 20Ah",
        ),
    ),
    "Office": (
        "OFF",
        (
            "A4 Paper 5x500",
            "Gel Pens 12-pack",
            "Stapler Heavy Duty",
            "Desk Organizer",
            "Whiteboard Markers",
            "Label Printer Tape",
            "Document Trays",
            "Sticky Notes 24-pack",
        ),
    ),
    "Household": (
        "HOU",
        (
            "Dish Soap 5l",
            "Paper Towels 12 rolls",
            "Trash Bags 60l",
            "Microfiber Cloths",
            "Hand Soap Refill",
            "Glass Cleaner 1l",
            "Sponges 10-pack",
            "Laundry Pods 40",
        ),
    ),
    "Tools": (
        "TOO",
        (
            "Cordless Drill 18V",
            "Screwdriver Set",
            "Tape Measure 8m",
            "Safety Gloves",
            "Spirit Level 60cm",
            "Utility Knife",
            "Work Light LED",
            "Socket Set 46pc",
        ),
    ),
    "Outdoor": (
        "OUT",
        (
            "Camping Chair",
            "Rain Poncho",
            "LED Headlamp",
            "Water Bottle 1l",
            "Picnic Blanket",
            "Garden Hose 25m",
            "Bird Feeder",
            "Solar Lantern",
        ),
    ),
}

WAREHOUSES: tuple[str, ...] = ("WH-NORTH", "WH-SOUTH", "WH-EAST")

#: Sales channels with their relative weight.
CHANNELS: tuple[tuple[str, int], ...] = (
    ("web", 45),
    ("store", 25),
    ("marketplace", 18),
    ("phone", 8),
    ("b2b-edi", 4),
)

CANCEL_REASONS: tuple[str, ...] = (
    "customer request",
    "payment failed",
    "out of stock",
    "duplicate order",
    "fraud check",
)

_CUSTOMER_WORDS_A = (
    "Acme",
    "Nordwind",
    "Bluebird",
    "Granite",
    "Harbor",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Oakridge",
    "Pioneer",
    "Quartz",
    "Riverside",
    "Summit",
    "Tidewater",
    "Vertex",
)
_CUSTOMER_WORDS_B = (
    "Trading",
    "Supplies",
    "Retail",
    "Foods",
    "Hardware",
    "Outfitters",
    "Logistics",
    "Stores",
)
_CUSTOMER_FORMS = ("GmbH", "Ltd", "Inc.", "S.A.", "B.V.", "AB", "LLC", "& Co.")


def customer_name(index: int) -> str:
    """A company name, distinct for the first few thousand indexes."""
    a = _CUSTOMER_WORDS_A[index % len(_CUSTOMER_WORDS_A)]
    b = _CUSTOMER_WORDS_B[(index // len(_CUSTOMER_WORDS_A)) % len(_CUSTOMER_WORDS_B)]
    form = _CUSTOMER_FORMS[(index // 7) % len(_CUSTOMER_FORMS)]
    cycle = index // (len(_CUSTOMER_WORDS_A) * len(_CUSTOMER_WORDS_B))
    return f"{a} {b} {form}" + (f" {cycle + 1}" if cycle else "")


def product_name(category: str, index: int) -> str:
    """A product name of a category; later cycles get a model number."""
    names = CATEGORIES[category][1]
    base = names[index % len(names)]
    cycle = index // len(names)
    return base if cycle == 0 else f"{base} Mk{cycle + 1}"
