fn main() {
    print!("{}", routero_operator::crd::crds_yaml().expect("crd"));
}
