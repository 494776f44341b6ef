// Writing a config back: the resolved YAML (every field, loadable again) and the schema's
// description (keys, types, defaults, constraints) for documentation.

/// One field of the schema, as the documentation shows it.
public struct ConfigFieldInfo: Equatable, Sendable {
    public var section: String
    public var key: String
    /// "int", "list of float", "roipool | roialign | dpool | mdpool", "string or null", ...
    public var type: String
    /// The default as YAML.
    public var defaultValue: String
    /// The field's own constraint ("0..5", "in (0, 1]", ...); empty if none.
    public var constraint: String
}

extension ExperimentConfig {
    /// The whole config as YAML with every field of every section, in schema order;
    /// `loadConfig` reads it back to an equal config.
    public func resolvedYAML() -> String {
        var writer = YAMLWriter()
        var copy = self
        copy.visitSections(&writer)
        return writer.text
    }

    /// Every field with its type, default and constraint.
    public static var schemaFields: [ConfigFieldInfo] {
        var lister = InfoLister()
        var config = ExperimentConfig()
        config.visitSections(&lister)
        return lister.fields
    }
}

struct YAMLWriter: SectionVisitor {
    var text = "# Resolved config: every field, with defaults filled in.\n"

    mutating func section<S: ConfigSection>(_ section: inout S) {
        text += "\(S.key):\n"
        var fields = FieldWriter()
        section.visit(&fields)
        text += fields.text
    }

    struct FieldWriter: FieldVisitor {
        var text = ""
        mutating func field<T: ConfigValue>(_ key: String, _ value: inout T, _ check: Check<T>?) {
            text += "  \(key): \(value.yaml)\n"
        }
    }
}

struct InfoLister: SectionVisitor {
    var fields: [ConfigFieldInfo] = []

    mutating func section<S: ConfigSection>(_ section: inout S) {
        var lister = FieldInfoLister(section: S.key)
        section.visit(&lister)
        fields += lister.fields
    }

    struct FieldInfoLister: FieldVisitor {
        let section: String
        var fields: [ConfigFieldInfo] = []
        mutating func field<T: ConfigValue>(_ key: String, _ value: inout T, _ check: Check<T>?) {
            fields.append(ConfigFieldInfo(section: section, key: key, type: T.typeDescription,
                                          defaultValue: value.yaml, constraint: check?.text ?? ""))
        }
    }
}
