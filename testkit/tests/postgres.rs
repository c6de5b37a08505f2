//! The throwaway PostgreSQL cluster itself: it answers SQL on its loopback port, refuses connections while
//! stopped, and comes back with its data (what the fleet-store tests rely on).

use testkit::postgres::Postgres;

#[test]
fn a_throwaway_cluster_answers_stops_and_comes_back_with_its_data() {
    let pg = Postgres::start();
    assert!(pg.url().starts_with("postgres://simian@127.0.0.1:"), "{}", pg.url());
    assert_eq!(pg.psql("SELECT 40 + 2").unwrap(), "42", "{}", pg.log());
    pg.psql("CREATE TABLE kept (v INT); INSERT INTO kept VALUES (7)").unwrap();
    pg.stop();
    let refused = pg.psql("SELECT 1").expect_err("a stopped server answered");
    assert!(refused.contains("connection") || refused.contains("Connection"), "{refused}");
    pg.start_again();
    assert_eq!(pg.psql("SELECT v FROM kept").unwrap(), "7", "{}", pg.log());
}
