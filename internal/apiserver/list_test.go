package apiserver

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// TestListPaging: a list longer than a page comes in pages chained by
// nextLink, as ARM pages, each group once and in order; a $skipToken this
// list did not hand out is refused.
func TestListPaging(t *testing.T) {
	e := newEnvOpts(t, func(o *Options) { o.ListPageSize = 2 })
	e.createRG()
	names := []string{"a1", "a2", "b1", "b2", "c1"}
	for _, n := range names {
		if code, _, body := e.do("PUT", cgPath+n+apiV, validGroup); code != http.StatusCreated {
			t.Fatalf("create %s: %d %v", n, code, body)
		}
	}
	lists := map[string]string{
		"resource group": "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups" + apiV,
		"subscription":   "/subscriptions/" + sub + "/providers/Microsoft.ContainerInstance/containerGroups" + apiV,
	}
	for what, first := range lists {
		t.Run(what, func(t *testing.T) {
			var got []string
			var pages []int
			for path := first; path != ""; {
				code, _, body := e.do("GET", path, "")
				if code != http.StatusOK {
					t.Fatalf("GET %s: %d %v", path, code, body)
				}
				vs, _ := body["value"].([]any)
				pages = append(pages, len(vs))
				for i := range vs {
					got = append(got, get(body, "value", i, "name").(string))
				}
				path = ""
				if next, _ := body["nextLink"].(string); next != "" {
					u, err := url.Parse(next)
					if err != nil || u.Scheme != "https" || u.Query().Get("api-version") == "" || u.Query().Get("$skipToken") == "" {
						t.Fatalf("nextLink %q: want an https URL with api-version and $skipToken", next)
					}
					path = u.RequestURI()
				}
				if len(pages) > 10 {
					t.Fatalf("no end after %d pages: %v", len(pages), got)
				}
			}
			if !slices.Equal(got, names) || !slices.Equal(pages, []int{2, 2, 1}) {
				t.Errorf("pages %v of %v, want [2 2 1] of %v", pages, got, names)
			}
		})
	}

	t.Run("a skip token from elsewhere is refused", func(t *testing.T) {
		other := base64.RawURLEncoding.EncodeToString([]byte("00000000-0000-0000-0000-000000000999/rg/x"))
		for _, tok := range []string{"not base64!", other} {
			code, _, body := e.do("GET", "/subscriptions/"+sub+"/providers/Microsoft.ContainerInstance/containerGroups"+apiV+"&$skipToken="+url.QueryEscape(tok), "")
			if code != http.StatusBadRequest || errCode(body) != "InvalidSkipToken" {
				t.Errorf("$skipToken %q: %d %v, want 400 InvalidSkipToken", tok, code, body)
			}
		}
	})
}
