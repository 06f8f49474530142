package lakeio

import "testing"

func TestListingGlob(t *testing.T) {
	cases := []struct {
		glob, broad string
		narrow      bool
	}{
		{"gs://b/run/kept-?????-of-?????.parquet", "gs://b/run/kept-**", true},
		{"gs://b/run/kept-[0-9]*.parquet", "gs://b/run/kept-**", true},
		{"gs://b/run/kept-*.parquet", "gs://b/run/kept-*.parquet", false},     // '*' first: Beam lists it
		{"gs://b/run/k*-?????.parquet", "gs://b/run/k*-?????.parquet", false}, // '*' before '?'
		{"gs://b/**/x?.parquet", "gs://b/**/x?.parquet", false},               // '**' is Beam's own
		{"/tmp/run/kept-?????-of-?????.parquet", "/tmp/run/kept-?????-of-?????.parquet", false},
		{"memfs://run/kept-?????.parquet", "memfs://run/kept-?????.parquet", false},
		{"gs://b/run/kept-[.parquet", "gs://b/run/kept-[.parquet", false}, // malformed: the filesystem reports it
	}
	for _, c := range cases {
		broad, narrow := listingGlob(c.glob)
		if broad != c.broad || narrow != c.narrow {
			t.Errorf("listingGlob(%q) = %q, %v; want %q, %v", c.glob, broad, narrow, c.broad, c.narrow)
		}
	}
}
