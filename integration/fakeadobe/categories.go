package fakeadobe

import (
	"strconv"
	"strings"
)

// category is one node of Stock's category tree (two levels here; Stock
// has up to three). Assets belong to leaves; a leaf's subjects are the
// nouns its asset titles are made of.
type category struct {
	ID       int
	Parent   int
	Name     string // en_US
	De, Fr   string // de_*, fr_*
	Subjects []string
}

// categories is the tree. Some IDs are Stock's own (Food 289, Bread 300,
// Cheese and Dairy Products 301, Cooking 311, Travel 1043, Dogs 47, from
// the CategoryTree and Search references); the rest are made up.
var categories = []category{
	{ID: 1, Name: "Animals", De: "Tiere", Fr: "Animaux"},
	{ID: 47, Parent: 1, Name: "Dogs", De: "Hunde", Fr: "Chiens", Subjects: []string{"dog", "puppy", "golden retriever", "german shepherd", "beagle"}},
	{ID: 48, Parent: 1, Name: "Cats", De: "Katzen", Fr: "Chats", Subjects: []string{"cat", "kitten", "tabby cat", "siamese cat"}},
	{ID: 49, Parent: 1, Name: "Birds", De: "Vögel", Fr: "Oiseaux", Subjects: []string{"bird", "parrot", "eagle", "robin", "owl"}},
	{ID: 50, Parent: 1, Name: "Horses", De: "Pferde", Fr: "Chevaux", Subjects: []string{"horse", "pony", "foal"}},
	{ID: 51, Parent: 1, Name: "Wildlife", De: "Wildtiere", Fr: "Faune sauvage", Subjects: []string{"fox", "deer", "lion", "elephant", "bear"}},
	{ID: 2, Name: "Buildings and Architecture", De: "Gebäude und Architektur", Fr: "Bâtiments et architecture"},
	{ID: 60, Parent: 2, Name: "Houses", De: "Häuser", Fr: "Maisons", Subjects: []string{"house", "cottage", "villa", "cabin"}},
	{ID: 61, Parent: 2, Name: "Skyscrapers", De: "Wolkenkratzer", Fr: "Gratte-ciel", Subjects: []string{"skyscraper", "tower", "office building"}},
	{ID: 62, Parent: 2, Name: "Bridges", De: "Brücken", Fr: "Ponts", Subjects: []string{"bridge", "suspension bridge", "footbridge"}},
	{ID: 63, Parent: 2, Name: "Interiors", De: "Innenräume", Fr: "Intérieurs", Subjects: []string{"living room", "kitchen", "bedroom", "staircase"}},
	{ID: 3, Name: "Business", De: "Business", Fr: "Affaires"},
	{ID: 70, Parent: 3, Name: "Office", De: "Büro", Fr: "Bureau", Subjects: []string{"office", "desk", "laptop", "coworker"}},
	{ID: 71, Parent: 3, Name: "Finance", De: "Finanzen", Fr: "Finance", Subjects: []string{"chart", "coins", "calculator", "stock market"}},
	{ID: 72, Parent: 3, Name: "Meetings", De: "Besprechungen", Fr: "Réunions", Subjects: []string{"meeting", "team", "presentation", "handshake"}},
	{ID: 73, Parent: 3, Name: "Startups", De: "Start-ups", Fr: "Start-up", Subjects: []string{"founder", "whiteboard", "brainstorm"}},
	{ID: 4, Name: "Drinks", De: "Getränke", Fr: "Boissons"},
	{ID: 80, Parent: 4, Name: "Coffee", De: "Kaffee", Fr: "Café", Subjects: []string{"coffee", "espresso", "cappuccino", "latte"}},
	{ID: 81, Parent: 4, Name: "Tea", De: "Tee", Fr: "Thé", Subjects: []string{"tea", "green tea", "teapot"}},
	{ID: 82, Parent: 4, Name: "Wine", De: "Wein", Fr: "Vin", Subjects: []string{"red wine", "white wine", "vineyard", "wine glass"}},
	{ID: 83, Parent: 4, Name: "Cocktails", De: "Cocktails", Fr: "Cocktails", Subjects: []string{"cocktail", "mojito", "margarita"}},
	{ID: 5, Name: "The Environment", De: "Umwelt", Fr: "Environnement"},
	{ID: 90, Parent: 5, Name: "Climate", De: "Klima", Fr: "Climat", Subjects: []string{"glacier", "storm", "drought"}},
	{ID: 91, Parent: 5, Name: "Recycling", De: "Recycling", Fr: "Recyclage", Subjects: []string{"recycling bin", "plastic bottle", "compost"}},
	{ID: 92, Parent: 5, Name: "Renewable Energy", De: "Erneuerbare Energien", Fr: "Énergies renouvelables", Subjects: []string{"wind turbine", "solar panel", "hydroelectric dam"}},
	{ID: 261, Name: "States of Mind", De: "Gemütszustände", Fr: "États d'esprit"},
	{ID: 262, Parent: 261, Name: "Happiness", De: "Glück", Fr: "Bonheur", Subjects: []string{"smile", "laughter", "celebration"}},
	{ID: 263, Parent: 261, Name: "Calm", De: "Ruhe", Fr: "Calme", Subjects: []string{"meditation", "yoga", "still lake"}},
	{ID: 264, Parent: 261, Name: "Stress", De: "Stress", Fr: "Stress", Subjects: []string{"deadline", "headache", "traffic jam"}},
	{ID: 289, Name: "Food", De: "Essen", Fr: "Nourriture"},
	{ID: 300, Parent: 289, Name: "Bread", De: "Brot", Fr: "Pain", Subjects: []string{"bread", "baguette", "croissant", "sourdough loaf"}},
	{ID: 301, Parent: 289, Name: "Cheese and Dairy Products", De: "Käse und Milchprodukte", Fr: "Fromages et produits laitiers", Subjects: []string{"cheese", "camembert", "cheddar", "milk", "yogurt"}},
	{ID: 311, Parent: 289, Name: "Cooking", De: "Kochen", Fr: "Cuisine", Subjects: []string{"chef", "frying pan", "soup", "pasta"}},
	{ID: 312, Parent: 289, Name: "Fruit", De: "Obst", Fr: "Fruits", Subjects: []string{"apple", "orange", "strawberry", "banana", "lemon"}},
	{ID: 313, Parent: 289, Name: "Vegetables", De: "Gemüse", Fr: "Légumes", Subjects: []string{"tomato", "carrot", "broccoli", "pumpkin"}},
	{ID: 444, Name: "Graphic Resources", De: "Grafische Ressourcen", Fr: "Ressources graphiques"},
	{ID: 445, Parent: 444, Name: "Backgrounds", De: "Hintergründe", Fr: "Arrière-plans", Subjects: []string{"background", "gradient", "bokeh"}},
	{ID: 446, Parent: 444, Name: "Patterns", De: "Muster", Fr: "Motifs", Subjects: []string{"seamless pattern", "geometric pattern", "floral pattern"}},
	{ID: 447, Parent: 444, Name: "Icons", De: "Symbole", Fr: "Icônes", Subjects: []string{"icon set", "line icon", "flat icon"}},
	{ID: 448, Parent: 444, Name: "Textures", De: "Texturen", Fr: "Textures", Subjects: []string{"wood texture", "paper texture", "concrete texture"}},
	{ID: 600, Name: "Hobbies and Leisure", De: "Hobbys und Freizeit", Fr: "Loisirs"},
	{ID: 601, Parent: 600, Name: "Music", De: "Musik", Fr: "Musique", Subjects: []string{"guitar", "piano", "headphones", "concert"}},
	{ID: 602, Parent: 600, Name: "Gardening", De: "Gartenarbeit", Fr: "Jardinage", Subjects: []string{"garden", "watering can", "seedling"}},
	{ID: 603, Parent: 600, Name: "Reading", De: "Lesen", Fr: "Lecture", Subjects: []string{"book", "library", "bookshelf"}},
	{ID: 700, Name: "Landscapes", De: "Landschaften", Fr: "Paysages"},
	{ID: 701, Parent: 700, Name: "Mountains", De: "Berge", Fr: "Montagnes", Subjects: []string{"mountain", "alpine peak", "valley"}},
	{ID: 702, Parent: 700, Name: "Beaches", De: "Strände", Fr: "Plages", Subjects: []string{"beach", "sand dune", "coastline", "wave"}},
	{ID: 703, Parent: 700, Name: "Forests", De: "Wälder", Fr: "Forêts", Subjects: []string{"forest", "pine tree", "woodland path"}},
	{ID: 704, Parent: 700, Name: "Deserts", De: "Wüsten", Fr: "Déserts", Subjects: []string{"desert", "cactus", "canyon"}},
	{ID: 800, Name: "People", De: "Menschen", Fr: "Personnes"},
	{ID: 801, Parent: 800, Name: "Families", De: "Familien", Fr: "Familles", Subjects: []string{"family", "parents", "grandparents"}},
	{ID: 802, Parent: 800, Name: "Children", De: "Kinder", Fr: "Enfants", Subjects: []string{"child", "toddler", "schoolgirl", "schoolboy"}},
	{ID: 803, Parent: 800, Name: "Portraits", De: "Porträts", Fr: "Portraits", Subjects: []string{"woman", "man", "portrait", "face"}},
	{ID: 804, Parent: 800, Name: "Seniors", De: "Senioren", Fr: "Seniors", Subjects: []string{"senior woman", "senior man", "retired couple"}},
	{ID: 900, Name: "Sports", De: "Sport", Fr: "Sports"},
	{ID: 901, Parent: 900, Name: "Football", De: "Fußball", Fr: "Football", Subjects: []string{"football", "soccer player", "stadium"}},
	{ID: 902, Parent: 900, Name: "Running", De: "Laufen", Fr: "Course à pied", Subjects: []string{"runner", "marathon", "running shoes"}},
	{ID: 903, Parent: 900, Name: "Cycling", De: "Radfahren", Fr: "Cyclisme", Subjects: []string{"cyclist", "bicycle", "mountain bike"}},
	{ID: 904, Parent: 900, Name: "Swimming", De: "Schwimmen", Fr: "Natation", Subjects: []string{"swimmer", "swimming pool", "diver"}},
	{ID: 1000, Name: "Technology", De: "Technologie", Fr: "Technologie"},
	{ID: 1001, Parent: 1000, Name: "Computers", De: "Computer", Fr: "Ordinateurs", Subjects: []string{"computer", "keyboard", "server room", "circuit board"}},
	{ID: 1002, Parent: 1000, Name: "Smartphones", De: "Smartphones", Fr: "Smartphones", Subjects: []string{"smartphone", "mobile app", "tablet"}},
	{ID: 1003, Parent: 1000, Name: "Artificial Intelligence", De: "Künstliche Intelligenz", Fr: "Intelligence artificielle", Subjects: []string{"robot", "neural network", "chip"}},
	{ID: 1100, Name: "Transport", De: "Verkehr", Fr: "Transports"},
	{ID: 1101, Parent: 1100, Name: "Cars", De: "Autos", Fr: "Voitures", Subjects: []string{"car", "electric car", "vintage car", "highway"}},
	{ID: 1102, Parent: 1100, Name: "Trains", De: "Züge", Fr: "Trains", Subjects: []string{"train", "railway station", "tram"}},
	{ID: 1103, Parent: 1100, Name: "Aircraft", De: "Flugzeuge", Fr: "Avions", Subjects: []string{"airplane", "airport", "helicopter"}},
	{ID: 1043, Name: "Travel", De: "Reisen", Fr: "Voyages"},
	{ID: 1044, Parent: 1043, Name: "Cities", De: "Städte", Fr: "Villes", Subjects: []string{"city skyline", "old town", "street market"}},
	{ID: 1045, Parent: 1043, Name: "Landmarks", De: "Sehenswürdigkeiten", Fr: "Monuments", Subjects: []string{"cathedral", "castle", "lighthouse", "monument"}},
	{ID: 1046, Parent: 1043, Name: "Vacations", De: "Urlaub", Fr: "Vacances", Subjects: []string{"suitcase", "hotel pool", "road trip"}},
}

var (
	categoryByID = map[int]*category{}
	leafIDs      []int
)

func init() {
	for i := range categories {
		c := &categories[i]
		categoryByID[c.ID] = c
		if c.Parent != 0 {
			leafIDs = append(leafIDs, c.ID)
		}
	}
}

// localName is the category's name in a locale ("de_DE", "fr_CA"...);
// other languages get the English name.
func (c *category) localName(locale string) string {
	switch {
	case strings.HasPrefix(locale, "de"):
		return c.De
	case strings.HasPrefix(locale, "fr"):
		return c.Fr
	}
	return c.Name
}

// link is the category's path on the Stock web site, as CategoryTree gives.
func (c *category) link() string {
	slug := strings.ToLower(c.Name)
	slug = strings.NewReplacer(" ", "-", "'", "").Replace(slug)
	return "/Category/" + slug + "/" + strconv.Itoa(c.ID) + "?load_type=category"
}

// children lists the categories under parent (0 = the top level), in tree
// order.
func children(parent int) []*category {
	var out []*category
	for i := range categories {
		if categories[i].Parent == parent {
			out = append(out, &categories[i])
		}
	}
	return out
}
