package httpmw_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/httpmw"
)

func Example() {
	locker, _ := memlock.New(nil) // every replica: the same store
	defer locker.Close()

	serial := httpmw.New(locker, &httpmw.Options{PathValue: "id", TokenHeader: "Dlock-Token"})
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/{id}/transfers", serial(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := httpmw.TokenFrom(r.Context()) // fence the account's writes with it
		fmt.Fprintf(w, "transfer on account %s, token %d", r.PathValue("id"), token)
	})))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/accounts/42/transfers", nil))
	fmt.Println(rec.Code, rec.Header().Get("Dlock-Token"), rec.Body)
	// Output: 200 1 transfer on account 42, token 1
}
