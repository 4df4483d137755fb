//! `modelgate node init` and `modelgate log keygen`: new note-signing
//! keys from the operating system's random source (the tlog crate reads
//! no randomness of its own), and the node's lineage key written where its
//! configuration names it, never over an existing one.

use modelgate_node::config::NodeConfig;

/// A new note-signing key named `name`, from the operating system's random
/// source (the tlog crate reads no randomness of its own).
pub fn new_note_key(name: &str, key_type: modelgate_tlog::KeyType) -> Result<modelgate_tlog::SignerKey, crate::Error> {
    let mut seed = [0u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut seed)
        .map_err(|e| crate::Error::Start(format!("the operating system's random source failed: {e}")))?;
    modelgate_tlog::SignerKey::from_seed(name, key_type, &seed)
        .map_err(|e| crate::Error::Config(format!("key name: {e}")))
}

/// The node's lineage key: the file its configuration names, or the key on
/// a token when `key` is a `pkcs11:` URI (opened with `pkcs11_module` when
/// the URI names no module).
pub fn node_key(c: &NodeConfig) -> Result<modelgate_tlog::SignerKey, crate::Error> {
    if let Some(m) = &c.pkcs11_module {
        modelgate_signer::pkcs11::set_default_module(m);
    }
    if let Some(uri) = c.key_uri() {
        return modelgate_tlog::SignerKey::from_token(
            &format!("{}/lineage", c.node),
            modelgate_tlog::KeyType::Ed25519,
            uri,
        )
        .map_err(|e| crate::Error::Config(format!("key: {e}")));
    }
    let text = std::fs::read_to_string(&c.key).map_err(|e| modelgate_node::NodeError::io(&c.key, e))?;
    modelgate_tlog::SignerKey::parse(text.trim()).map_err(|e| crate::Error::Config(format!("{}: {e}", c.key.display())))
}

/// `modelgate node init`: the node's lineage key, written where its
/// configuration names it (never over an existing one), or read from its
/// token; its verifier key and the command a node admin runs to enroll it.
pub fn init_node_key(config: &NodeConfig) -> Result<(String, String), crate::Error> {
    let key = if config.key_uri().is_some() {
        node_key(config)?
    } else {
        let key = new_note_key(&format!("{}/lineage", config.node), modelgate_tlog::KeyType::Ed25519)?;
        let private = format!("{}\n", key.to_private_string());
        modelgate_node::files::write_new(&config.key, private.as_bytes(), 0o600, false)?;
        key
    };
    let vkey = key.verifier().to_string();
    let scopes = config
        .scopes
        .iter()
        .map(|s| format!("--scope '{s}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let enroll = format!(
        "modelgate node enroll {} --node-key '{vkey}' {scopes} --key NODE_ADMIN.key --authority {}",
        config.node, config.authority
    );
    Ok((vkey, enroll))
}
