package types

// MapSecrets replaces every secret value of the group with what f returns
// for it: the values of secure environment variables (of init containers
// too), the files of secret volumes and the passwords of registry
// credentials. The store seals them with it before a write and opens them
// after a read (--encryption-key-file); a secret added to the model must
// be added here. Empty values are left alone. It changes the group's maps
// and slices in place, so call it on a copy of a group others hold.
func (g *ContainerGroup) MapSecrets(f func([]byte) ([]byte, error)) error {
	str := func(s *string) error {
		if *s == "" {
			return nil
		}
		b, err := f([]byte(*s))
		if err != nil {
			return err
		}
		*s = string(b)
		return nil
	}
	for _, cs := range [][]Container{g.Spec.InitContainers, g.Spec.Containers} {
		for i := range cs {
			for j := range cs[i].Env {
				if cs[i].Env[j].Secure {
					if err := str(&cs[i].Env[j].Value); err != nil {
						return err
					}
				}
			}
		}
	}
	for i := range g.Spec.Volumes {
		for name, content := range g.Spec.Volumes[i].Secret {
			if len(content) == 0 {
				continue
			}
			b, err := f(content)
			if err != nil {
				return err
			}
			g.Spec.Volumes[i].Secret[name] = b
		}
	}
	for i := range g.Spec.Registries {
		if err := str(&g.Spec.Registries[i].Password); err != nil {
			return err
		}
	}
	return nil
}
