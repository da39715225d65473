//! Host accounts through the router (included by `tests.rs`, so it runs on both backends).

use std::io::Cursor;

use super::*;

impl Harness {
    async fn put(&self, path: &str, cookie: Option<&str>, body: Value) -> Answer {
        self.call(Method::PUT, path, cookie, Some(body)).await
    }

    async fn upload(&self, cookie: &str, bytes: Vec<u8>) -> Answer {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/account/avatar")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(bytes))
            .unwrap();
        self.send(request).await
    }

    /// Signs in by email and onboards with `slug`; the sign-in cookie.
    async fn host(&self, email: &str, name: &str, slug: &str) -> String {
        let cookie = self.signed_in(email).await;
        let done = self
            .post(
                "/api/account/onboarding",
                Some(&cookie),
                json!({"useCase": "meetings", "displayName": name, "slug": slug}),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
        cookie
    }
}

fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    // Left third red, middle green, right third blue; noise in the low bits keeps it large.
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        let mut z = (x as u64) << 32 | y as u64;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^= z >> 33;
        let n = (z % 24) as u8;
        match x * 3 / width {
            0 => image::Rgba([255 - n, n, n, 255]),
            1 => image::Rgba([n, 255 - n, n, 255]),
            _ => image::Rgba([n, n, 255 - n, 255]),
        }
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut Cursor::new(&mut out), format)
        .unwrap();
    out
}

#[tokio::test]
async fn onboarding_chooses_a_unique_slug_once_and_it_never_changes() {
    let h = harness().await;
    let ada = h.signed_in("ada@example.com").await;
    let account = h.get("/api/account", Some(&ada)).await;
    assert_eq!(account.body["onboarded"], false);
    assert!(account.body["useCases"].as_array().unwrap().len() >= 3);

    // Checked before the form is sent, each refusal in words.
    for (slug, code) in [
        ("ad", "slug_length"),
        ("ada_l", "slug_characters"),
        ("-ada", "slug_edges"),
        ("signin", "slug_reserved"),
        ("API", "slug_reserved"),
    ] {
        let checked = h
            .get(&format!("/api/account/slug?slug={slug}"), Some(&ada))
            .await;
        assert_eq!(
            (checked.status, checked.code()),
            (StatusCode::BAD_REQUEST, code),
            "{slug}"
        );
        assert!(!checked.body["message"].as_str().unwrap().is_empty());
    }
    let free = h.get("/api/account/slug?slug=Ada-L", Some(&ada)).await;
    assert_eq!(free.body, json!({"slug": "ada-l", "available": true}));

    let done = h
        .post(
            "/api/account/onboarding",
            Some(&ada),
            json!({"useCase": "meetings", "displayName": "Ada Lovelace", "slug": "Ada-L"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body["slug"], "ada-l");

    // Unique whatever the case, for everyone else.
    let grace = h.signed_in("grace@example.com").await;
    let taken = h.get("/api/account/slug?slug=ADA-L", Some(&grace)).await;
    assert_eq!(
        (taken.status, taken.code()),
        (StatusCode::CONFLICT, "slug_taken")
    );
    assert_eq!(
        taken.body["message"],
        "That URL is already taken; choose another."
    );
    let taken = h
        .post(
            "/api/account/onboarding",
            Some(&grace),
            json!({"useCase": "webinars", "displayName": "Grace", "slug": "ada-L"}),
        )
        .await;
    assert_eq!(taken.code(), "slug_taken");

    // Never again, neither by onboarding twice nor through the settings.
    let again = h
        .post(
            "/api/account/onboarding",
            Some(&ada),
            json!({"useCase": "meetings", "displayName": "Ada", "slug": "ada-2"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "slug_fixed")
    );
    let settings = json!({"displayName": "Ada L.", "slug": "ada-2"});
    let moved = h.put("/api/account/profile", Some(&ada), settings).await;
    assert_eq!(moved.code(), "slug_fixed");
    let settings = json!({"displayName": "Ada L.", "email": "ada@elsewhere.com"});
    let moved = h.put("/api/account/profile", Some(&ada), settings).await;
    assert_eq!(moved.code(), "email_fixed");
    assert!(
        moved.body["message"]
            .as_str()
            .unwrap()
            .contains("cannot be changed")
    );
    let account = h.get("/api/account", Some(&ada)).await;
    assert_eq!(
        (
            account.body["slug"].as_str(),
            account.body["email"].as_str()
        ),
        (Some("ada-l"), Some("ada@example.com"))
    );
}

#[tokio::test]
async fn the_profile_is_the_name_label_everywhere() {
    let h = harness().await;
    let ada = h.host("ada@example.com", "Ada Lovelace", "ada").await;
    let saved = h
        .put(
            "/api/account/profile",
            Some(&ada),
            json!({"displayName": "Ada L.", "headline": "Countess", "color": "#1F6FEB", "notifications": true}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    let bad = h
        .put(
            "/api/account/profile",
            Some(&ada),
            json!({"displayName": "Ada", "color": "blue"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let empty = h
        .put(
            "/api/account/profile",
            Some(&ada),
            json!({"displayName": "  "}),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let me = h.get("/api/me", Some(&ada)).await;
    assert_eq!(me.body["name"], "Ada L.", "not the email's local part");
    assert_eq!(me.body["notifications"], true);
    assert_eq!(me.body["slug"], "ada");
    assert_eq!(
        me.body["label"],
        json!({"name": "Ada L.", "headline": "Countess", "image": "", "color": "#1f6feb"})
    );
    // A room's page prefills the same label; the join token carries it.
    let room = h.get("/api/rooms/ada/coffee", Some(&ada)).await;
    assert_eq!(room.body["label"]["name"], "Ada L.");
    h.go_live("room:default:ada-coffee");
    let joined = h
        .post(
            "/api/rooms/ada/coffee/join",
            Some(&ada),
            json!({"label": room.body["label"]}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    let claims = h.claims(&joined.body);
    assert_eq!(
        (
            claims.name.as_str(),
            claims.headline.as_str(),
            claims.color.as_str()
        ),
        ("Ada L.", "Countess", "#1f6feb")
    );
}

#[tokio::test]
async fn an_avatar_is_cropped_to_its_centred_square_re_encoded_and_limited() {
    let h = harness().await;
    let ada = h.host("ada@example.com", "Ada", "ada").await;
    // 900×300 with noise: over the JSON body limit, under the avatar's.
    let upload = picture(900, 300, image::ImageFormat::Png);
    assert!(
        upload.len() > sfu_node::rejection::MAX_BODY_BYTES,
        "{}",
        upload.len()
    );
    let done = h.upload(&ada, upload.clone()).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    let url = done.body["avatar"].as_str().unwrap().to_string();
    assert!(url.starts_with("/avatars/ada.png?v=1"), "{url}");

    let served = h.get(&url, None).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers[header::CONTENT_TYPE], "image/png");
    let request = Request::get(&url).body(Body::empty()).unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    assert_ne!(
        bytes.as_ref(),
        upload.as_slice(),
        "the upload is never served"
    );
    let kept = image::load_from_memory(&bytes).unwrap().to_rgba8();
    assert_eq!(kept.dimensions(), (300, 300), "the centred square, 300 px");
    let [r, g, b, _] = kept.get_pixel(150, 150).0;
    assert!(g > 200 && r < 40 && b < 40, "the middle third: {r} {g} {b}");
    let [r, g, b, _] = kept.get_pixel(2, 2).0;
    assert!(
        g > 200 && r < 40 && b < 40,
        "no red from the left third: {r} {g} {b}"
    );

    let me = h.get("/api/me", Some(&ada)).await;
    assert_eq!(me.body["label"]["image"], url.as_str());

    let big = h
        .upload(&ada, picture(4000, 10, image::ImageFormat::Jpeg))
        .await;
    assert_eq!(
        big.status,
        StatusCode::OK,
        "a wide JPEG is fine: {:?}",
        big.body
    );
    let kept = h.get("/api/account", Some(&ada)).await;
    assert!(kept.body["avatar"].as_str().unwrap().ends_with("?v=2"));

    let huge = h
        .upload(&ada, vec![0u8; accounts::avatar::MAX_BYTES + 1])
        .await;
    assert_eq!(
        (huge.status, huge.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "avatar_too_large")
    );
    assert!(huge.body["message"].as_str().unwrap().contains("5 MB"));
    let gif = h
        .upload(&ada, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec())
        .await;
    assert_eq!(
        (gif.status, gif.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "avatar_format")
    );
    let text = h.upload(&ada, b"not a picture".to_vec()).await;
    assert_eq!(
        (text.status, text.code()),
        (StatusCode::BAD_REQUEST, "avatar_unreadable")
    );
    let nobody = h.get("/avatars/grace.png", None).await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_host_creates_edits_and_deletes_rooms_on_their_dashboard() {
    let h = harness().await;
    let ada = h.host("ada@example.com", "Ada", "ada").await;
    let grace = h.host("grace@example.com", "Grace", "grace").await;

    let form = json!({"slug": "office", "title": "Office hours", "theme": "Meeting",
        "coHosts": ["grace@example.com"], "emailDomains": []});
    let made = h
        .post("/api/hosts/ada/rooms", Some(&ada), form.clone())
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let again = h
        .post("/api/hosts/ada/rooms", Some(&ada), form.clone())
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "room_exists")
    );
    let declared = json!({"slug": "coffee", "title": "Mine now"});
    let clash = h.post("/api/hosts/ada/rooms", Some(&ada), declared).await;
    assert_eq!(
        clash.code(),
        "room_exists",
        "a manifest's room keeps its URL"
    );
    let elsewhere = h
        .post("/api/hosts/ada/rooms", Some(&grace), form.clone())
        .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    let bad = json!({"slug": "o_o"});
    let bad = h.post("/api/hosts/ada/rooms", Some(&ada), bad).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // The dashboard lists it next to the host's declared rooms, which it cannot change.
    let board = h.get("/api/hosts/ada", Some(&ada)).await;
    let rooms = board.body["rooms"].as_array().unwrap();
    let office = rooms.iter().find(|r| r["slug"] == "office").unwrap();
    assert_eq!(
        (office["editable"].as_bool(), office["title"].as_str()),
        (Some(true), Some("Office hours"))
    );
    assert_eq!(office["coHosts"], json!(["grace@example.com"]));
    let coffee = rooms.iter().find(|r| r["slug"] == "coffee").unwrap();
    assert_eq!(coffee["editable"], false);
    let edit = h
        .put(
            "/api/hosts/ada/rooms/coffee",
            Some(&ada),
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(edit.code(), "room_declared");
    let public = h.get("/api/hosts/ada", None).await;
    assert_eq!(
        (
            public.body["displayName"].as_str(),
            public.body["rooms"].as_array().map(Vec::len)
        ),
        (Some("Ada"), Some(0))
    );

    // The room works like any other: guests see it, the owner and co-host are its hosts.
    let page = h.get("/api/rooms/ada/office", None).await;
    assert_eq!(
        (page.status, page.body["title"].as_str()),
        (StatusCode::OK, Some("Office hours"))
    );
    let page = h.get("/api/rooms/ada/office", Some(&grace)).await;
    assert_eq!(page.body["isHost"], true);

    // Locked with a passcode; then an edit leaves the passcode as it was.
    let edit = json!({"title": "Office hours", "locked": true, "passcode": "4242",
        "coHosts": ["grace@example.com"]});
    let edited = h.put("/api/hosts/ada/rooms/office", Some(&ada), edit).await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.body);
    let step = h
        .post(
            "/api/rooms/ada/office/passcode",
            None,
            json!({"passcode": "4242"}),
        )
        .await;
    assert_eq!(step.status, StatusCode::OK, "{:?}", step.body);
    let edit = json!({"title": "Open office", "locked": true});
    h.put("/api/hosts/ada/rooms/office", Some(&ada), edit).await;
    let page = h.get("/api/rooms/ada/office", None).await;
    assert_eq!(
        (
            page.body["title"].as_str(),
            page.body["passcode"].as_bool(),
            page.body["locked"].as_bool()
        ),
        (Some("Open office"), Some(true), Some(true))
    );
    let step = h
        .post(
            "/api/rooms/ada/office/passcode",
            None,
            json!({"passcode": "4242"}),
        )
        .await;
    assert_eq!(
        step.status,
        StatusCode::OK,
        "the passcode was kept: {:?}",
        step.body
    );
    let page = h.get("/api/rooms/ada/office", Some(&grace)).await;
    assert_eq!(page.body["isHost"], false, "the edit left out the co-host");

    // Kept in the store next to the manifests' rooms, so the local mode keeps it.
    let kept = h.state.store.kept_rooms().await.unwrap();
    assert_eq!(
        kept.iter().map(|k| k.slug.as_str()).collect::<Vec<_>>(),
        ["office"]
    );
    let fresh = LocalCatalog::new(manifests::Manifests::default(), at(NOW));
    assert_eq!(dashboard::restore(&h.state.store, &fresh).await.unwrap(), 1);
    assert!(catalog::find_room(&fresh, "ada", "office").is_some());
    // Since then a manifest declared a room at the same URL: it is served, not both.
    let mut declared = manifests::Manifests::default();
    let mut taken = (*catalog::find_room(&fresh, "ada", "office").unwrap()).clone();
    taken.metadata.name = Some("declared-office".into());
    taken.spec.title = Some("Declared".into());
    declared.rooms.push(taken);
    let clash = LocalCatalog::new(declared, at(NOW));
    assert_eq!(dashboard::restore(&h.state.store, &clash).await.unwrap(), 0);
    let at_url: Vec<_> = clash
        .rooms()
        .into_iter()
        .filter(|r| r.spec.host == "ada" && r.spec.slug == "office")
        .map(|r| r.spec.title.clone())
        .collect();
    assert_eq!(
        at_url,
        [Some("Declared".to_string())],
        "one room at the URL, the manifest's"
    );

    let gone = h
        .call(
            Method::DELETE,
            "/api/hosts/ada/rooms/office",
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get("/api/rooms/ada/office", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(h.state.store.kept_rooms().await.unwrap().is_empty());
    let declared = h
        .call(
            Method::DELETE,
            "/api/hosts/ada/rooms/coffee",
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(declared.code(), "room_declared");
}

#[tokio::test]
async fn deleting_an_account_takes_the_slug_typed_and_leaves_an_audit_record() {
    let h = harness().await;
    let ada = h.host("ada-l@example.com", "Ada", "ada-l").await;
    let form = json!({"slug": "office", "title": "Office"});
    assert_eq!(
        h.post("/api/hosts/ada-l/rooms", Some(&ada), form)
            .await
            .status,
        StatusCode::CREATED
    );

    let wrong = h
        .post("/api/account/delete", Some(&ada), json!({"confirm": "ada"}))
        .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::BAD_REQUEST, "confirm_mismatch")
    );
    assert!(wrong.body["message"].as_str().unwrap().contains("ada-l"));
    let nobody = h
        .post("/api/account/delete", None, json!({"confirm": "ada-l"}))
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);

    let deleted = h
        .post(
            "/api/account/delete",
            Some(&ada),
            json!({"confirm": "ADA-L"}),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    let cleared = deleted
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("rt_session=;"));
    assert!(cleared, "signed out");
    assert!(
        deleted.body["removed"]
            .as_array()
            .unwrap()
            .contains(&json!({"what": "rooms", "count": 1}))
    );
    assert_eq!(
        h.get("/api/rooms/ada-l/office", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/api/hosts/ada-l", None).await.status,
        StatusCode::NOT_FOUND
    );
    let audit = h.state.store.deletions().await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str(), audit[0].2),
        ("ada-l@example.com", "ada-l", NOW)
    );
    assert!(
        audit[0].3.contains("rooms: 1") && audit[0].3.contains("account and profile: 1"),
        "{}",
        audit[0].3
    );

    // The URL people were given never leads to someone else.
    let grace = h.signed_in("grace@example.com").await;
    let taken = h.get("/api/account/slug?slug=ada-l", Some(&grace)).await;
    assert_eq!(taken.code(), "slug_taken");
}

#[tokio::test]
async fn oidc_refusals_need_no_provider_to_be_shown_in_words() {
    let h = harness().await;
    let off = h.get("/signin/oidc", None).await;
    assert_eq!(off.headers[header::LOCATION], "/?error=oidc_off");
    for refusal in oidc::verify::OidcRefusal::ALL {
        assert!(!refusal.message().is_empty());
        let page = pages::web_file("signin.js").unwrap();
        assert!(
            page.contains(refusal.code()),
            "the sign-in page explains {}",
            refusal.code()
        );
    }
}
