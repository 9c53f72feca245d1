package main

import "testing"

func TestSumIf(t *testing.T) {
	rounds := map[int]run{
		1: {fields: map[string]float64{"cache_hit": 3, "requests": 10}},
		2: {fields: map[string]float64{"cache_hit": 4, "requests": 10}},
	}
	tests := []struct {
		name  string
		ok    bool
		field string
		want  string
	}{
		{"field in every run", true, "cache_hit", "7"},
		{"not asked for", false, "cache_hit", ""},
		{"field in no run", true, "cache_miss", ""},
	}
	for _, tc := range tests {
		if got := sumIf(tc.ok, rounds, tc.field); got != tc.want {
			t.Errorf("%s: sumIf = %q, want %q", tc.name, got, tc.want)
		}
	}
}
