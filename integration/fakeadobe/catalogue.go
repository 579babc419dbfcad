package fakeadobe

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"
)

// Stock's media types (media_type_id in the Stock API's search reference).
const (
	mediaPhoto        = 1
	mediaIllustration = 2
	mediaVector       = 3
	mediaVideo        = 4
	media3D           = 6
	mediaTemplate     = 7
)

// contentTypeFilter maps search_parameters[filters][content_type:<name>]
// to a media type.
var contentTypeFilter = map[string]int{
	"photo": mediaPhoto, "illustration": mediaIllustration, "vector": mediaVector,
	"video": mediaVideo, "3d": media3D, "template": mediaTemplate,
}

// asset is one generated Stock file.
type asset struct {
	ID          int
	Title       string
	CreatorName string
	CreatorID   int
	Country     string
	MediaType   int
	ContentType string
	VectorType  string // "svg" or "zip" for vectors, else ""
	Width       int
	Height      int
	Category    *category
	Keywords    []string
	Premium     int // premium_level_id: 0 core, 1 free, 2-4 premium
	Editorial   bool
	Gentech     bool
	Transparent bool
	HasReleases bool
	Has4K       bool
	Duration    int // ms, videos
	Framerate   float64
	IsLoop      bool
	NbDownloads int
	Created     time.Time
	SizeBytes   int
	Featured    uint32 // relevance when no words are searched
	Hash        string // stands for the random part of Stock's file names

	tokens map[string]int // normalized word → weight (3 title, 1 keyword)
}

// catalogue is the deterministic set of assets: the same size and seed
// always give the same assets in the same order.
type catalogue struct {
	assets []*asset // ascending ID
	byID   map[int]*asset
}

type creator struct {
	name    string
	id      int
	country string
}

func newCatalogue(size int, seed uint64) *catalogue {
	rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))
	var creators []creator
	for i := 0; i < 80; i++ {
		name := firstNames[i%len(firstNames)] + " " + lastNames[(i*7)%len(lastNames)]
		if i%10 == 9 {
			name = studioNames[(i/10)%len(studioNames)]
		}
		creators = append(creators, creator{name, 200400000 + i*7919, editorialCities[i%len(editorialCities)][1]})
	}
	c := &catalogue{byID: make(map[int]*asset, size)}
	epoch := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < size; i++ {
		a := &asset{ID: 100000000 + i*20000 + rng.IntN(20000)}
		cr := creators[rng.IntN(len(creators))]
		a.CreatorName, a.CreatorID, a.Country = cr.name, cr.id, cr.country
		a.Category = categoryByID[leafIDs[rng.IntN(len(leafIDs))]]
		a.MediaType = pickMediaType(rng)
		a.Editorial = a.MediaType == mediaPhoto && rng.IntN(12) == 0 ||
			a.MediaType == mediaVideo && rng.IntN(10) == 0
		switch p := rng.IntN(100); {
		case p < 70:
			a.Premium = 0
		case p < 80:
			a.Premium = 1
		default:
			a.Premium = 2 + rng.IntN(3)
		}
		if a.Editorial {
			a.Premium = 0
		}
		a.Gentech = !a.Editorial && a.MediaType != mediaVideo && rng.IntN(8) == 0
		a.HasReleases = a.Category.Parent == 800 && !a.Editorial
		subject := a.Category.Subjects[rng.IntN(len(a.Category.Subjects))]
		adj := adjectives[rng.IntN(len(adjectives))]
		setting := settings[rng.IntN(len(settings))]
		a.Title = makeTitle(rng, a, adj, subject, setting)
		fillMedia(rng, a)
		a.NbDownloads = int(rng.ExpFloat64() * 800)
		a.Created = epoch.Add(time.Duration(rng.Int64N(int64(11 * 365 * 24 * time.Hour)))).Truncate(time.Second)
		a.Featured = rng.Uint32()
		a.Hash = randomName(rng, 32)
		a.Keywords = makeKeywords(a, adj, subject)
		a.tokens = map[string]int{}
		for _, kw := range a.Keywords {
			for _, w := range words(kw) {
				a.tokens[w] = max(a.tokens[w], 1)
			}
		}
		for _, w := range words(a.Title) {
			a.tokens[w] = 3
		}
		c.assets = append(c.assets, a)
		c.byID[a.ID] = a
	}
	return c
}

func pickMediaType(rng *rand.Rand) int {
	switch p := rng.IntN(100); {
	case p < 55:
		return mediaPhoto
	case p < 70:
		return mediaIllustration
	case p < 83:
		return mediaVector
	case p < 94:
		return mediaVideo
	case p < 97:
		return mediaTemplate
	}
	return media3D
}

func makeTitle(rng *rand.Rand, a *asset, adj, subject, setting string) string {
	if a.Editorial {
		city := editorialCities[rng.IntN(len(editorialCities))]
		return fmt.Sprintf("%s, %s - %s %d, %d: %s %s", city[0], city[1],
			months[rng.IntN(12)], 1+rng.IntN(28), 2016+rng.IntN(9), capitalize(subject),
			editorialEvents[rng.IntN(len(editorialEvents))])
	}
	switch a.MediaType {
	case mediaIllustration:
		return "Illustration of " + article(adj) + " " + adj + " " + subject + " " + setting
	case mediaVector:
		return capitalize(subject) + " vector illustration, " + adj + " flat design"
	case mediaVideo:
		return capitalize(adj) + " " + subject + " " + setting + ", slow motion video"
	case media3D:
		return "3D render of " + article(adj) + " " + adj + " " + subject
	case mediaTemplate:
		return capitalize(adj) + " " + subject + " social media post template"
	}
	return capitalize(adj) + " " + subject + " " + setting
}

// fillMedia sets the dimensions and file facts of a media type.
func fillMedia(rng *rand.Rand, a *asset) {
	orient := rng.IntN(10) // 0-5 horizontal, 6-8 vertical, 9 square
	long := 3000 + rng.IntN(5000)
	switch {
	case orient < 6:
		a.Width, a.Height = long, long*2/3
	case orient < 9:
		a.Width, a.Height = long*2/3, long
	default:
		a.Width, a.Height = long, long
	}
	a.ContentType = "image/jpeg"
	switch a.MediaType {
	case mediaIllustration:
		if rng.IntN(4) == 0 {
			a.ContentType = "image/png"
			a.Transparent = rng.IntN(2) == 0
		}
	case mediaVector:
		a.ContentType, a.VectorType = "application/illustrator", "zip"
		if rng.IntN(3) == 0 {
			a.ContentType, a.VectorType = "image/svg+xml", "svg"
		}
		a.Width, a.Height = 5000, 5000*a.Height/a.Width
	case mediaVideo:
		a.ContentType = "video/mp4"
		a.Has4K = rng.IntN(2) == 0
		a.Width, a.Height = 1920, 1080
		if a.Has4K {
			a.Width, a.Height = 3840, 2160
		}
		a.Duration = (5 + rng.IntN(55)) * 1000
		a.Framerate = []float64{23.976, 25, 29.97, 30, 50, 59.94}[rng.IntN(6)]
		a.IsLoop = rng.IntN(6) == 0
	case media3D:
		a.ContentType = "application/vnd.adobe.dn"
		a.Width, a.Height = 2000, 2000
	case mediaTemplate:
		a.ContentType = "image/vnd.adobe.photoshop.template"
		a.Width, a.Height = 2048, 1424
	}
	a.SizeBytes = a.Width * a.Height / (3 + rng.IntN(5))
	if a.MediaType == mediaVideo {
		a.SizeBytes = a.Duration * (2000 + rng.IntN(8000))
	}
}

func makeKeywords(a *asset, adj, subject string) []string {
	kw := []string{subject, adj, strings.ToLower(a.Category.Name)}
	if parent := categoryByID[a.Category.Parent]; parent != nil {
		kw = append(kw, strings.ToLower(parent.Name))
	}
	kw = append(kw, map[int][]string{
		mediaPhoto:        {"photo", "photography"},
		mediaIllustration: {"illustration", "drawing", "art"},
		mediaVector:       {"vector", "graphic", "design"},
		mediaVideo:        {"video", "footage", "clip"},
		media3D:           {"3d", "render", "model"},
		mediaTemplate:     {"template", "layout", "design"},
	}[a.MediaType]...)
	if a.Editorial {
		kw = append(kw, "editorial", "news", "event")
	}
	if a.Gentech {
		kw = append(kw, "generative ai")
	}
	for _, w := range words(a.Title) {
		if len(kw) >= 25 {
			break
		}
		kw = appendUnique(kw, w)
	}
	return kw
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// words splits text into normalized search words: lower case, letters and
// digits only, stopwords dropped, a plural reduced to its singular.
func words(text string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if stopwords[f] {
			continue
		}
		out = append(out, singular(f))
	}
	return out
}

func singular(w string) string {
	switch {
	case len(w) > 4 && strings.HasSuffix(w, "ies"):
		return w[:len(w)-3] + "y"
	case len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us"):
		return w[:len(w)-1]
	}
	return w
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

const nameAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomName(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameAlphabet[rng.IntN(len(nameAlphabet))]
	}
	return string(b)
}

// thumbnailPath is the path Stock's CDN gives a thumbnail of this size:
// jpg/00/86/76/04/500_F_86760419_<hash>.jpg for asset 86760419.
func (a *asset) thumbnailPath(size int) string {
	d := fmt.Sprintf("%010d", a.ID)
	return fmt.Sprintf("/jpg/%s/%s/%s/%s/%d_F_%d_%s.jpg", d[0:2], d[2:4], d[4:6], d[6:8], size, a.ID, a.Hash)
}

// thumbnailSize is the thumbnail's dimensions when its longest side is
// size pixels.
func (a *asset) thumbnailSize(size int) (w, h int) {
	if a.Width >= a.Height {
		return size, max(1, size*a.Height/a.Width)
	}
	return max(1, size*a.Width/a.Height), size
}

// licences lists the licences that apply to the asset (Licensing reference,
// URL parameters: license).
func (a *asset) licences() []string {
	switch a.MediaType {
	case mediaVideo:
		if a.Has4K {
			return []string{"Video_HD", "Video_4K"}
		}
		return []string{"Video_HD"}
	case media3D, mediaTemplate:
		return []string{"Standard"}
	}
	if a.Premium >= 2 {
		return []string{"Standard", "Standard_M", "Extended"}
	}
	return []string{"Standard", "Extended"}
}
