package fakeadobe

import (
	"fmt"
	"hash/fnv"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// searchQuery is a parsed Search/Files request (Search API reference).
type searchQuery struct {
	words        []string
	wordsRaw     string
	limit        int
	offset       int
	order        string
	thumbSize    int
	mediaTypes   map[int]bool // empty = all
	orientation  string
	premium      string // "false", "true", "all" or ""
	editorial    string // "true", "false" or ""
	gentech      string
	transparent  bool
	mediaID      int
	similar      int
	creatorID    int
	category     int
	width        intRange
	height       intRange
	areaMPixels  intRange
	videoMaxSecs int // 0 = any
	videoMinSecs int
	hasReleases  string
	similarSeed  uint64 // similar_image upload: its hash orders the answer
}

type intRange struct{ min, max int } // 0 = open

func (r intRange) contains(v int) bool {
	return (r.min == 0 || v >= r.min) && (r.max == 0 || v <= r.max)
}

// paramError is a 400 from Stock with code 020 (invalid parameters).
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

func invalidParam(format string, args ...any) *paramError {
	return &paramError{fmt.Sprintf(format, args...)}
}

var localePattern = regexp.MustCompile(`^[a-z]{2}[_-][A-Z]{2}$`)

// validLocale accepts Stock's locale codes (en_US, de_DE, fr_CA...; the
// Files reference writes en-US).
func validLocale(l string) bool { return l == "" || localePattern.MatchString(l) }

const sp = "search_parameters"

func param(q url.Values, name string) (string, bool) {
	v, ok := q[sp+"["+name+"]"]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v, ok := param(q, name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || (hi > 0 && n > hi) {
		if hi > 0 {
			return 0, invalidParam("Invalid value for %s[%s]: %q (an integer from %d to %d)", sp, name, v, lo, hi)
		}
		return 0, invalidParam("Invalid value for %s[%s]: %q (an integer of at least %d)", sp, name, v, lo)
	}
	return n, nil
}

func enumParam(q url.Values, name string, allowed ...string) (string, error) {
	v, ok := param(q, name)
	if !ok {
		return "", nil
	}
	if !slices.Contains(allowed, v) {
		return "", invalidParam("Invalid value for %s[%s]: %q (one of %s)", sp, name, v, strings.Join(allowed, ", "))
	}
	return v, nil
}

func rangeParam(q url.Values, name string) (intRange, error) {
	v, ok := param(q, name)
	if !ok || v == "" {
		return intRange{}, nil
	}
	lo, hi, isRange := strings.Cut(v, "-")
	var r intRange
	var err error
	if lo != "" {
		if r.min, err = strconv.Atoi(lo); err != nil {
			return r, invalidParam("Invalid range for %s[%s]: %q", sp, name, v)
		}
	}
	if isRange && hi != "" {
		if r.max, err = strconv.Atoi(hi); err != nil {
			return r, invalidParam("Invalid range for %s[%s]: %q", sp, name, v)
		}
	}
	return r, nil
}

func parseSearch(q url.Values) (*searchQuery, error) {
	hasParam := false
	for k := range q {
		if strings.HasPrefix(k, sp+"[") {
			hasParam = true
		}
	}
	if !hasParam {
		return nil, invalidParam("At least one search_parameters[] value is required")
	}
	s := &searchQuery{}
	var err error
	s.wordsRaw, _ = param(q, "words")
	s.words = words(s.wordsRaw)
	if s.limit, err = intParam(q, "limit", 32, 1, 100); err != nil {
		return nil, err
	}
	if s.offset, err = intParam(q, "offset", 0, 0, 0); err != nil {
		return nil, err
	}
	if s.order, err = enumParam(q, "order", "relevance", "creation", "featured", "nb_downloads", "undiscovered", "popularity"); err != nil {
		return nil, err
	}
	ts, err := enumParam(q, "thumbnail_size", "110", "160", "220", "240", "500", "1000")
	if err != nil {
		return nil, err
	}
	s.thumbSize, _ = strconv.Atoi(ts)
	if s.thumbSize == 0 {
		s.thumbSize = 500
	}
	for _, id := range []struct {
		name string
		dst  *int
	}{{"media_id", &s.mediaID}, {"similar", &s.similar}, {"creator_id", &s.creatorID}, {"category", &s.category}} {
		if *id.dst, err = intParam(q, id.name, 0, 1, 0); err != nil {
			return nil, err
		}
	}
	if err := s.parseFilters(q); err != nil {
		return nil, err
	}
	if v, ok := param(q, "similar_image"); ok && v != "0" && v != "1" {
		return nil, invalidParam("Invalid value for %s[similar_image]: %q (0 or 1)", sp, v)
	}
	return s, nil
}

func (s *searchQuery) parseFilters(q url.Values) error {
	const f = "filters]["
	s.mediaTypes = map[int]bool{}
	for k, vs := range q {
		name, ok := strings.CutPrefix(k, sp+"["+f+"content_type:")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, "]")
		mt, known := contentTypeFilter[name]
		if !known {
			return invalidParam("Unknown content type filter %q", name)
		}
		switch vs[0] {
		case "1", "true":
			s.mediaTypes[mt] = true
		case "0", "false":
		default:
			return invalidParam("Invalid value for %s: %q (0 or 1)", k, vs[0])
		}
	}
	var err error
	if s.orientation, err = enumParam(q, f+"orientation", "horizontal", "vertical", "square", "panoramic", "all"); err != nil {
		return err
	}
	if s.premium, err = enumParam(q, f+"premium", "false", "true", "all"); err != nil {
		return err
	}
	if s.editorial, err = enumParam(q, f+"editorial", "true", "false", "all", "1", "0"); err != nil {
		return err
	}
	if s.gentech, err = enumParam(q, f+"gentech", "true", "false", "all"); err != nil {
		return err
	}
	if s.hasReleases, err = enumParam(q, f+"has_releases", "true", "false", "all"); err != nil {
		return err
	}
	tr, err := enumParam(q, f+"transparent", "1", "true", "all")
	if err != nil {
		return err
	}
	s.transparent = tr == "1" || tr == "true"
	if s.width, err = rangeParam(q, f+"image_width"); err != nil {
		return err
	}
	if s.height, err = rangeParam(q, f+"image_height"); err != nil {
		return err
	}
	if s.areaMPixels, err = rangeParam(q, f+"area_m_pixels"); err != nil {
		return err
	}
	vd, err := enumParam(q, f+"video_duration", "10", "20", "30", "30-", "all")
	if err != nil {
		return err
	}
	switch vd {
	case "10", "20", "30":
		s.videoMaxSecs, _ = strconv.Atoi(vd)
	case "30-":
		s.videoMinSecs = 30
	}
	return nil
}

// matches reports whether a passes every filter and, with words, its score.
func (s *searchQuery) matches(a *asset) (int, bool) {
	if len(s.mediaTypes) > 0 && !s.mediaTypes[a.MediaType] {
		return 0, false
	}
	switch s.orientation {
	case "horizontal":
		if a.Width <= a.Height {
			return 0, false
		}
	case "vertical":
		if a.Width >= a.Height {
			return 0, false
		}
	case "square":
		if a.Width != a.Height {
			return 0, false
		}
	case "panoramic":
		if a.Width < 2*a.Height {
			return 0, false
		}
	}
	if !boolFilter(s.premium, a.Premium >= 2) || !boolFilter(s.editorial, a.Editorial) ||
		!boolFilter(s.gentech, a.Gentech) || !boolFilter(s.hasReleases, a.HasReleases) {
		return 0, false
	}
	if s.transparent && !a.Transparent {
		return 0, false
	}
	if !s.width.contains(a.Width) || !s.height.contains(a.Height) ||
		!s.areaMPixels.contains(a.Width*a.Height/1000000) {
		return 0, false
	}
	if s.videoMaxSecs > 0 && (a.MediaType != mediaVideo || a.Duration > s.videoMaxSecs*1000) ||
		s.videoMinSecs > 0 && (a.MediaType != mediaVideo || a.Duration < s.videoMinSecs*1000) {
		return 0, false
	}
	if s.mediaID != 0 && a.ID != s.mediaID || s.creatorID != 0 && a.CreatorID != s.creatorID ||
		s.category != 0 && a.Category.ID != s.category && a.Category.Parent != s.category {
		return 0, false
	}
	// Words can be media IDs (Search reference, search_parameters[words]).
	if id, err := strconv.Atoi(strings.TrimSpace(s.wordsRaw)); err == nil && id > 0 {
		return 1, a.ID == id
	}
	score := 0
	for _, w := range s.words {
		weight, ok := a.tokens[w]
		if !ok {
			return 0, false
		}
		score += weight
	}
	return score, true
}

func boolFilter(v string, has bool) bool {
	switch v {
	case "true", "1":
		return has
	case "false", "0":
		return !has
	}
	return true
}

type scored struct {
	a     *asset
	score int
}

// search returns the page of matching assets and how many matched.
func (c *catalogue) search(q *searchQuery) ([]*asset, int) {
	var ref *asset
	if q.similar != 0 {
		if ref = c.byID[q.similar]; ref == nil {
			return nil, 0
		}
	}
	var hits []scored
	for _, a := range c.assets {
		score, ok := q.matches(a)
		if !ok {
			continue
		}
		if ref != nil {
			if a == ref || a.Category != ref.Category {
				continue
			}
			score = sharedTokens(a, ref)
		}
		hits = append(hits, scored{a, score})
	}
	order := q.order
	if ref != nil || q.similarSeed != 0 {
		order = "similar"
	}
	slices.SortStableFunc(hits, func(x, y scored) int { return compareHits(order, q.similarSeed, x, y) })
	total := len(hits)
	if q.offset >= total {
		return nil, total
	}
	end := min(q.offset+q.limit, total)
	page := make([]*asset, 0, end-q.offset)
	for _, h := range hits[q.offset:end] {
		page = append(page, h.a)
	}
	return page, total
}

func compareHits(order string, seed uint64, x, y scored) int {
	a, b := x.a, y.a
	var c int
	switch order {
	case "creation":
		c = b.Created.Compare(a.Created)
	case "nb_downloads", "popularity":
		c = b.NbDownloads - a.NbDownloads
	case "undiscovered":
		c = a.NbDownloads - b.NbDownloads
	case "similar":
		c = y.score - x.score
		if c == 0 && seed != 0 {
			c = int(mix(seed, b.ID)>>33) - int(mix(seed, a.ID)>>33)
		}
	default: // relevance, featured
		c = y.score - x.score
		if c == 0 {
			c = int(b.Featured>>1) - int(a.Featured>>1)
		}
	}
	if c != 0 {
		return c
	}
	return a.ID - b.ID
}

func sharedTokens(a, b *asset) int {
	n := 0
	for w := range a.tokens {
		if _, ok := b.tokens[w]; ok {
			n++
		}
	}
	return n
}

func mix(seed uint64, id int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", seed, id)
	return h.Sum64()
}
