package fakeadobe

// Word lists the catalogue generator makes titles, keywords and creators of.

var adjectives = []string{
	"happy", "beautiful", "modern", "vintage", "colorful", "minimal", "cozy", "bright",
	"dramatic", "peaceful", "young", "old", "golden", "misty", "snowy", "sunny",
	"rustic", "elegant", "abstract", "fresh", "tiny", "giant", "playful", "serene",
	"urban", "wild", "cheerful", "dark", "pastel", "vibrant",
}

var settings = []string{
	"on a sunny beach", "in the autumn park", "at sunset", "in the morning light",
	"on a white background", "in the city at night", "in a snowy forest", "by the lake",
	"in a cozy kitchen", "on a wooden table", "in the mountains", "under a blue sky",
	"in the rain", "at the golden hour", "in a modern office", "in a spring garden",
	"close-up", "from above", "in a studio", "by the window", "in the desert",
	"on a foggy morning", "at the market", "in the countryside", "on the street",
	"with copy space", "in soft focus", "against a brick wall", "at night", "in summer",
}

var editorialCities = [][2]string{
	{"Paris", "France"}, {"Berlin", "Germany"}, {"New York", "USA"}, {"Tokyo", "Japan"},
	{"London", "United Kingdom"}, {"Rome", "Italy"}, {"Barcelona", "Spain"},
	{"Amsterdam", "Netherlands"}, {"Sydney", "Australia"}, {"Toronto", "Canada"},
	{"Lisbon", "Portugal"}, {"Prague", "Czech Republic"},
}

var editorialEvents = []string{
	"at the street festival", "during the marathon", "at the climate march",
	"at the opening of the exhibition", "during the championship final",
	"at the trade fair", "during the carnival parade", "at the city council election",
}

var months = []string{
	"January", "February", "March", "April", "May", "June",
	"July", "August", "September", "October", "November", "December",
}

var firstNames = []string{
	"Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas",
	"Kira", "Liam", "Mila", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara",
}

var lastNames = []string{
	"Lenz", "Moreau", "Silva", "Novak", "Berg", "Okafor", "Tanaka", "Rossi",
	"Kowalski", "Hansen", "Duarte", "Fischer", "Nguyen", "Walsh", "Jansen", "Ortiz",
}

var studioNames = []string{
	"Pixel Harbor", "BlueFern Studio", "Northlight", "Vectorgarden", "Motionframe",
	"Polygon Works", "Paper Lantern", "Bright Owl Media",
}

var stopwords = map[string]bool{
	"a": true, "an": true, "the": true, "of": true, "on": true, "in": true, "at": true,
	"by": true, "for": true, "and": true, "with": true, "from": true, "under": true,
	"against": true, "during": true, "to": true,
}
